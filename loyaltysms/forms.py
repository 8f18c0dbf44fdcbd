from zoneinfo import available_timezones

import phonenumbers
from django import forms
from django.contrib.auth import password_validation

from loyaltysms.models import ROLE_RANK, Membership, Role, User


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


class SignUpForm(forms.Form):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "email", "placeholder": "you@brand.com"})
    )
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not a common password and not like your email.",
    )

    TAKEN = "An account with this email exists already: sign in instead."

    def clean_email(self):
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(self.TAKEN)
        return email

    def clean(self):
        data = super().clean()
        if "email" in data and "password" in data:
            try:
                password_validation.validate_password(data["password"], User(email=data["email"]))
            except forms.ValidationError as error:
                self.add_error("password", error)
        return data


# Currencies offered first; any ISO 4217 code the program needs can be set on the program page.
CURRENCIES = [
    "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN",
    "INR", "SGD", "HKD", "BRL", "MXN", "ZAR", "AED",
]  # fmt: skip


def _country_choices() -> list[tuple[str, str]]:
    return [
        (code, f"{code} (+{phonenumbers.country_code_for_region(code)})")
        for code in sorted(phonenumbers.SUPPORTED_REGIONS)
    ]


class BrandForm(forms.Form):
    name = forms.CharField(
        label="Brand name",
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
        help_text="Shown in your texts' opt-in and HELP answers; you can change it later.",
    )
    timezone = forms.ChoiceField(
        label="Time zone",
        initial="America/New_York",
        help_text="Your days, reports and scheduled sends follow it.",
    )
    currency = forms.ChoiceField(choices=[(c, c) for c in CURRENCIES], initial="USD")
    default_country = forms.ChoiceField(
        label="Default country",
        initial="US",
        help_text="Phone numbers typed without a country code are read as this country's.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(z, z) for z in sorted(available_timezones())]
        self.fields["default_country"].choices = _country_choices()
