"""FIELD_ENCRYPTION_KEY rotation re-encrypts every stored secret, whichever app keeps it: after
the old key is dropped, carrier credentials, the widget's signing secret, Shopify's secret and
webhook secrets all still read."""

from cryptography.fernet import Fernet
from django.core.management import call_command

from hooks.services.endpoints import endpoint_create, endpoint_secret
from messaging.crypto import decrypt
from messaging.management.commands.rotate_carrier_secrets import encrypted_fields
from messaging.services.setup import sender_default
from shopify.services import connection_save
from storefront.services import widget_get


def test_every_secret_survives_a_key_rotation(alice_brand, settings):
    tenant = alice_brand.tenant
    settings.HOOKS_ALLOW_PRIVATE_URLS = False
    sender = sender_default(tenant)
    widget = widget_get(tenant)
    shop = connection_save(
        tenant=tenant, shop_domain="alices-bakery", secret="shpss_0123456789abcdef", actor=None
    )
    endpoint = endpoint_create(
        tenant=tenant, url="https://hooks.example.com/x", events=["points_earned"], actor=None
    ).endpoint
    rows = [
        (sender, "auth_token_encrypted"),
        (widget, "signing_secret_encrypted"),
        (shop, "secret_encrypted"),
        (endpoint, "secret_encrypted"),
    ]
    assert {(type(row), name) for row, name in rows} <= set(encrypted_fields())
    before = [decrypt(getattr(row, name)) for row, name in rows]
    old_key = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{old_key}"
    call_command("rotate_carrier_secrets")
    settings.FIELD_ENCRYPTION_KEY = settings.FIELD_ENCRYPTION_KEY.split(",")[0]  # old key gone
    for row, _ in rows:
        row.refresh_from_db()
    assert [decrypt(getattr(row, name)) for row, name in rows] == before
    assert endpoint_secret(endpoint) == before[3]
