from django import forms


class ConnectForm(forms.Form):
    """A store and the secret its webhooks are signed with. The secret is never rendered back."""

    shop_domain = forms.CharField(
        label="Store domain",
        max_length=200,
        help_text="Its myshopify.com name, e.g. alices-bakery.myshopify.com.",
    )
    secret = forms.CharField(
        label="Webhook signing secret",
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=(
            "The key shown under Settings → Notifications → Webhooks (“Your webhooks will be "
            "signed with …”), or your custom app's API secret key. Stored encrypted; it is "
            "never shown again."
        ),
    )
