from django import forms

from loyaltysms.models import ROLE_RANK, Membership, Role


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Where the key is used, e.g. “Shopify storefront”.",
        widget=forms.TextInput(attrs={"placeholder": "Storefront", "autocomplete": "off"}),
    )


class InviteForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "name@brand.com"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MARKETER)

    def __init__(self, *args, inviter: Membership, **kwargs):
        super().__init__(*args, **kwargs)
        # Offer only roles up to the inviter's own.
        own = ROLE_RANK[Role(inviter.role)]
        self.fields["role"].choices = [
            (value, label) for value, label in Role.choices if ROLE_RANK[Role(value)] <= own
        ]
