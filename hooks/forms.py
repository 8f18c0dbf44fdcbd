from django import forms

from hooks.models import DeliveryStatus, HookEvent, validate_endpoint_url


class EndpointForm(forms.Form):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        validators=[validate_endpoint_url],
        help_text="Where events are POSTed, as JSON. https:// (http:// only for localhost).",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/loyalty"}),
    )
    description = forms.CharField(
        max_length=200, required=False, help_text="What receives them, e.g. “CRM sync”."
    )
    events = forms.MultipleChoiceField(
        choices=HookEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="The events this endpoint is sent.",
    )


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False,
        choices=[("", "All"), *DeliveryStatus.choices],
    )
    after = forms.IntegerField(required=False, min_value=1)
