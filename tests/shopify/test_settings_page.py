"""Settings → Shopify: connect a store, its secret never shown again, disconnect; admins only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from loyaltysms.models import AuditEvent, Role
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt
from shopify.models import ShopifyConnection

from ..conftest import add_member, signed_in
from .conftest import ALICE_SECRET, ALICE_SHOP, CHARLIE_SHOP, payload

PAGE = reverse("settings_shopify")
DISCONNECT = reverse("settings_shopify_disconnect")


def connection(brand) -> ShopifyConnection | None:
    with tenant_scope(brand.tenant):
        return ShopifyConnection.objects.first()


def test_an_admin_connects_a_store_and_the_secret_is_never_shown_again(alice_brand, alice_client):
    page = alice_client.get(PAGE)
    assert page.status_code == 200
    assert "No store connected" in page.content.decode()
    response = alice_client.post(
        PAGE, {"shop_domain": "https://Alices-Bakery.myshopify.com/admin", "secret": ALICE_SECRET}
    )
    assert response.status_code == 302
    saved = connection(alice_brand)
    assert saved.shop_domain == ALICE_SHOP
    assert ALICE_SECRET.encode() not in bytes(saved.secret_encrypted)  # encrypted at rest
    assert decrypt(saved.secret_encrypted) == ALICE_SECRET
    body = alice_client.get(PAGE).content.decode()
    assert ALICE_SHOP in body and "never shown again" in body
    assert ALICE_SECRET not in body and ALICE_SECRET[:12] not in body
    assert "http://testserver/webhooks/shopify" in body
    for topic in ("orders/paid", "refunds/create", "customers/update"):
        assert topic in body
    with tenant_scope(alice_brand.tenant):
        assert AuditEvent.objects.filter(action="shopify.connect", target=ALICE_SHOP).exists()


def test_a_bare_store_name_is_completed(alice_brand, alice_client):
    alice_client.post(PAGE, {"shop_domain": "alices-bakery", "secret": ALICE_SECRET})
    assert connection(alice_brand).shop_domain == ALICE_SHOP


@pytest.mark.parametrize(
    ("shop_domain", "secret", "field"),
    [
        ("alicesbakery.com", ALICE_SECRET, "shop_domain"),
        ("evil.myshopify.com.attacker.test", ALICE_SECRET, "shop_domain"),
        ("-x.myshopify.com", ALICE_SECRET, "shop_domain"),
        (ALICE_SHOP, "short", "secret"),
        (ALICE_SHOP, "", "secret"),
    ],
)
def test_bad_input_is_shown_on_the_form(alice_brand, alice_client, shop_domain, secret, field):
    response = alice_client.post(PAGE, {"shop_domain": shop_domain, "secret": secret})
    assert response.status_code == 422
    assert response.context["form"].errors[field]
    assert connection(alice_brand) is None


def test_a_store_of_another_brand_cannot_be_taken(alice_brand, charlie_brand, alice_client):
    signed_in(charlie_brand.owner).post(
        PAGE, {"shop_domain": CHARLIE_SHOP, "secret": "charlies-own-secret-123"}
    )
    response = alice_client.post(PAGE, {"shop_domain": CHARLIE_SHOP, "secret": ALICE_SECRET})
    assert response.status_code == 422
    assert "another brand" in response.content.decode()
    assert connection(alice_brand) is None
    assert decrypt(connection(charlie_brand).secret_encrypted) == "charlies-own-secret-123"


def test_reconnecting_replaces_the_domain_and_secret(alice_brand, alice_client):
    alice_client.post(PAGE, {"shop_domain": ALICE_SHOP, "secret": ALICE_SECRET})
    alice_client.post(PAGE, {"shop_domain": "alices-new.myshopify.com", "secret": "x" * 32})
    with tenant_scope(alice_brand.tenant):
        assert ShopifyConnection.objects.count() == 1
    assert connection(alice_brand).shop_domain == "alices-new.myshopify.com"
    assert decrypt(connection(alice_brand).secret_encrypted) == "x" * 32


def test_disconnect_asks_first_then_forgets_the_store(alice_brand, alice_client, alice_shop):
    body = alice_client.get(PAGE).content.decode()
    assert 'action="/settings/shopify/disconnect/" onsubmit="return confirm(' in body
    assert alice_client.post(DISCONNECT).status_code == 302
    assert connection(alice_brand) is None
    assert alice_shop.deliver("customers/create", payload("customers_create")).status_code == 401
    with tenant_scope(alice_brand.tenant):
        assert AuditEvent.objects.filter(action="shopify.disconnect").exists()


def test_the_page_lists_recent_deliveries(alice_brand, alice_client, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="b54557e4-delivery")
    alice_shop.deliver("products/update", {"id": 1}, webhook_id="c0ffee-ignored")
    body = alice_client.get(PAGE).content.decode()
    assert "b54557e4-delivery" in body and "49 points awarded." in body
    assert "order 5829174620315" in body
    assert "c0ffee-ignored" in body and "Ignored" in body


def test_another_brands_store_and_deliveries_are_not_shown(
    alice_brand, charlie_brand, alice_client, charlie_shop
):
    charlie_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="charlies-delivery")
    body = alice_client.get(PAGE).content.decode()
    assert CHARLIE_SHOP not in body and "charlies-delivery" not in body
    assert alice_client.post(DISCONNECT).status_code == 302  # alice has none: nothing happens
    assert connection(charlie_brand) is not None


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MARKETER])
def test_viewers_and_marketers_read_but_cannot_change(alice_brand, alice_shop, role):
    client = signed_in(add_member(alice_brand.tenant, f"{role}@bakery.test", role))
    page = client.get(PAGE)
    assert page.status_code == 200
    body = page.content.decode()
    assert ALICE_SHOP in body and "Disconnect" not in body and 'name="secret"' not in body
    assert (
        client.post(PAGE, {"shop_domain": "x.myshopify.com", "secret": "y" * 32}).status_code == 403
    )
    assert client.post(DISCONNECT).status_code == 403
    assert connection(alice_brand).shop_domain == ALICE_SHOP
    assert decrypt(connection(alice_brand).secret_encrypted) == ALICE_SECRET


def test_signed_out_goes_to_sign_in(alice_brand):
    from django.test import Client

    response = Client().get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_tab_is_in_the_settings_tabs(alice_client):
    body = alice_client.get(reverse("settings_api_keys")).content.decode()
    assert 'href="/settings/shopify/"' in body
