"""POST /webhooks/shopify: signed deliveries mapped onto the loyalty services, once each."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from django.db import OperationalError

from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member, Order, PointsEntry, Refund
from programs.services.program import program_get, program_update
from shopify.models import ShopifyWebhook

from .conftest import ALICE_SECRET, ALICE_SHOP, CHARLIE_SECRET, Shopify, payload, sign

CUSTOMER_ID = "7208329461786"
ORDER_ID = "5829174620315"


def state(brand) -> tuple:
    """Everything a webhook could change in a brand."""
    with tenant_scope(brand.tenant):
        return (
            list(Member.objects.order_by("pk").values_list(
                "external_id", "email", "phone", "first_name", "last_name", "tags",
                "points_balance", "lifetime_spend",
            )),
            list(Order.objects.values_list("order_id", "points_awarded", "refunded_amount")),
            Refund.objects.count(),
            PointsEntry.objects.count(),
            list(ShopifyWebhook.objects.values_list("webhook_id", "outcome")),
        )  # fmt: skip


def member(brand, external_id=CUSTOMER_ID) -> Member:
    with tenant_scope(brand.tenant):
        return Member.objects.get(external_id=external_id)


def deliveries(brand) -> list[ShopifyWebhook]:
    with tenant_scope(brand.tenant):
        return list(ShopifyWebhook.objects.order_by("pk"))


# --- signatures ----------------------------------------------------------------------------


def test_a_signed_customer_is_enrolled_with_its_profile(alice_brand, alice_shop):
    response = alice_shop.deliver("customers/create", payload("customers_create"))
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "applied"
    maya = member(alice_brand)
    assert maya.email == "maya.lopez@example.com"
    assert str(maya.phone) == "+12125550142"
    assert (maya.first_name, maya.last_name) == ("Maya", "Lopez")
    assert maya.tags == ["VIP", "Newsletter"]
    [delivery] = deliveries(alice_brand)
    assert (delivery.topic, delivery.subject) == ("customers/create", f"customer {CUSTOMER_ID}")


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BODY = json.dumps(payload("orders_paid")).encode()
TAMPERED = BODY.replace(b'"49.90"', b'"4990.00"')
assert TAMPERED != BODY

# name → (body sent, header overrides); every other header is as Shopify sends it.
FORGERIES = {
    "tampered body": (TAMPERED, {"Hmac_Sha256": sign(ALICE_SECRET, BODY)}),
    "wrong secret": (BODY, {"Hmac_Sha256": sign(CHARLIE_SECRET, BODY)}),
    "no signature": (BODY, {"Hmac_Sha256": None}),
    "empty signature": (BODY, {"Hmac_Sha256": ""}),
    "not base64": (BODY, {"Hmac_Sha256": "not base64 at all"}),
    "hex, not base64": (BODY, {"Hmac_Sha256": _hex(ALICE_SECRET, BODY)}),
    "unknown shop": (BODY, {"Shop_Domain": "someone-else.myshopify.com"}),
    "no shop": (BODY, {"Shop_Domain": None}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_anything_not_signed_by_the_store_is_401_and_changes_nothing(
    alice_brand, alice_shop, forgery
):
    body, overrides = FORGERIES[forgery]
    before = state(alice_brand)
    response = alice_shop.deliver("orders/paid", body, **overrides)
    assert response.status_code == 401
    assert response.content == b"Unauthorized"  # the same for every reason: no brand named
    assert state(alice_brand) == before == ([], [], 0, 0, [])


def test_an_unknown_shop_and_a_bad_signature_get_the_same_answer(alice_shop):
    body = payload("customers_create")
    stranger = Shopify("nobody-here.myshopify.com", ALICE_SECRET)
    forger = Shopify(ALICE_SHOP, "a-secret-that-is-not-alices")
    first, second = (s.deliver("customers/create", body) for s in (stranger, forger))
    assert (first.status_code, first.content, first["Content-Type"]) == (
        second.status_code,
        second.content,
        second["Content-Type"],
    )


def test_get_is_not_allowed(alice_shop):
    assert alice_shop.client.get("/webhooks/shopify").status_code == 405


def test_a_signed_delivery_without_a_webhook_id_is_refused_unapplied(alice_brand, alice_shop):
    response = alice_shop.deliver("customers/create", payload("customers_create"), Webhook_Id=None)
    assert response.status_code == 400
    assert state(alice_brand)[0] == []


# --- what each topic does ------------------------------------------------------------------


def test_order_paid_awards_points_by_the_earn_rate(alice_brand, alice_shop):
    with tenant_scope(alice_brand.tenant):
        program_update(program=program_get(alice_brand.tenant), earn_rate=Decimal(2))
    response = alice_shop.deliver("orders/paid", payload("orders_paid"))
    assert response.json()["outcome"] == "applied"
    maya = member(alice_brand)
    assert maya.points_balance == 99  # 49.90 × 2, rounded down
    assert maya.lifetime_spend == Decimal("49.90")
    assert maya.email == "maya.lopez@example.com"  # enrolled from the order's customer
    with tenant_scope(alice_brand.tenant):
        order = Order.objects.get(order_id=ORDER_ID)
    assert order.subtotal == Decimal("49.90") and order.currency == "USD"
    assert order.placed_at.isoformat() == "2024-11-20T21:42:07+00:00"
    assert deliveries(alice_brand)[0].detail == "99 points awarded."


def test_order_created_enrolls_the_customer_without_points(alice_brand, alice_shop):
    response = alice_shop.deliver("orders/create", payload("orders_create"))
    assert response.json()["outcome"] == "applied"
    maya = member(alice_brand)
    assert maya.points_balance == 0 and maya.orders_count == 0
    with tenant_scope(alice_brand.tenant):
        assert not Order.objects.exists()


def test_a_guest_order_is_acknowledged_and_ignored(alice_brand, alice_shop):
    for topic in ("orders/create", "orders/paid"):
        response = alice_shop.deliver(topic, payload("orders_paid_guest"))
        assert response.status_code == 200
        assert response.json()["outcome"] == "ignored"
    assert state(alice_brand)[:4] == ([], [], 0, 0)


def test_a_refund_takes_back_its_share_of_the_points(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"))
    assert member(alice_brand).points_balance == 49
    response = alice_shop.deliver("refunds/create", payload("refunds_create"))
    assert response.json()["outcome"] == "applied", response.json()
    # The cake's line, after its share of the discount: 27.18 of 49.90 → 27 of 49 points.
    maya = member(alice_brand)
    assert maya.points_balance == 22
    assert maya.lifetime_spend == Decimal("22.72")
    with tenant_scope(alice_brand.tenant):
        refund = Refund.objects.get()
    assert (refund.refund_id, refund.amount, refund.points_reversed) == (
        "1021394358426",
        Decimal("27.18"),
        27,
    )


def test_a_refund_counts_line_items_only_not_shipping_or_tax(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"))
    body = payload("refunds_create")
    body["refund_line_items"] = []  # a shipping-only refund
    body["refund_shipping_lines"] = [{"id": 1, "subtotal_amount_set": {}}]
    assert alice_shop.deliver("refunds/create", body).json()["outcome"] == "ignored"
    assert member(alice_brand).points_balance == 49


def test_a_refund_without_the_exact_set_uses_the_number(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"))
    body = payload("refunds_create")
    del body["refund_line_items"][0]["subtotal_set"]
    assert alice_shop.deliver("refunds/create", body).json()["outcome"] == "applied"
    assert member(alice_brand).points_balance == 22


def test_a_refund_of_an_order_that_earned_nothing_here_is_ignored(alice_brand, alice_shop):
    response = alice_shop.deliver("refunds/create", payload("refunds_create"))
    assert response.json()["outcome"] == "ignored"
    assert state(alice_brand)[:4] == ([], [], 0, 0)


def test_a_refund_larger_than_what_is_left_takes_back_what_is_left(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"))
    body = payload("refunds_create")
    body["refund_line_items"][0]["subtotal_set"]["shop_money"]["amount"] = "80.00"
    assert alice_shop.deliver("refunds/create", body).json()["outcome"] == "applied"
    assert member(alice_brand).points_balance == 0


def test_customer_update_changes_the_profile_and_adds_tags(alice_brand, alice_shop):
    alice_shop.deliver("customers/create", payload("customers_create"))
    response = alice_shop.deliver("customers/update", payload("customers_update"))
    assert response.json()["outcome"] == "applied"
    maya = member(alice_brand)
    assert maya.last_name == "Lopez-Reyes"
    assert maya.email == "maya@lopez-reyes.example"
    assert str(maya.phone) == "+12125550142"  # "555-01" isn't a number: left as it was
    assert maya.tags == ["VIP", "Newsletter", "Wholesale"]  # added, none taken away


def test_other_topics_are_acknowledged_and_ignored(alice_brand, alice_shop):
    response = alice_shop.deliver("products/update", {"id": 1, "title": "Sourdough"})
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert state(alice_brand)[:4] == ([], [], 0, 0)
    assert deliveries(alice_brand)[0].outcome == "ignored"


def test_an_order_in_another_currency_is_refused_and_recorded(alice_brand, alice_shop):
    body = payload("orders_paid")
    body["currency"] = "EUR"
    response = alice_shop.deliver("orders/paid", body)
    assert response.status_code == 200
    assert response.json()["outcome"] == "refused"
    assert "EUR" in response.json()["detail"]
    # Nothing of it was applied, not even the member the order would have enrolled.
    assert state(alice_brand)[:4] == ([], [], 0, 0)
    [delivery] = deliveries(alice_brand)
    assert (delivery.outcome, delivery.subject) == ("refused", f"order {ORDER_ID}")


# --- exactly once --------------------------------------------------------------------------


def test_a_replayed_delivery_awards_nothing_twice(alice_brand, alice_shop):
    first = alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-1")
    after_first = state(alice_brand)
    again = alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-1")
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True
    assert state(alice_brand) == after_first
    assert member(alice_brand).points_balance == 49


def test_the_same_order_paid_twice_under_two_webhook_ids_awards_once(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-1")
    response = alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-2")
    assert response.json() == {
        "outcome": "ignored",
        "detail": "Recorded already: no second award.",
        "duplicate": False,
    }
    assert member(alice_brand).points_balance == 49
    assert [d.outcome for d in deliveries(alice_brand)] == ["applied", "ignored"]


def test_the_same_refund_twice_takes_back_once(alice_brand, alice_shop):
    alice_shop.deliver("orders/paid", payload("orders_paid"))
    alice_shop.deliver("refunds/create", payload("refunds_create"), webhook_id="r-1")
    alice_shop.deliver("refunds/create", payload("refunds_create"), webhook_id="r-2")
    assert member(alice_brand).points_balance == 22


def test_a_database_failure_is_a_503_and_leaves_nothing_so_shopify_retries(
    alice_brand, alice_shop, monkeypatch
):
    from shopify import services

    def down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "order_record", down)
    response = alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-1")
    assert response.status_code == 503
    assert state(alice_brand)[:5] == ([], [], 0, 0, [])  # not even the delivery's row
    monkeypatch.undo()
    retry = alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="w-1")
    assert retry.json()["outcome"] == "applied"
    assert member(alice_brand).points_balance == 49


# --- two brands ----------------------------------------------------------------------------


def test_two_brands_with_two_stores_never_touch_each_other(
    alice_brand, charlie_brand, alice_shop, charlie_shop
):
    alice_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="same-id")
    charlies_before = state(charlie_brand)
    assert charlies_before[0] == []
    # The same customer and order ids from charlie's store are charlie's own.
    charlie_shop.deliver("orders/paid", payload("orders_paid"), webhook_id="same-id")
    assert member(charlie_brand).points_balance == 49
    assert member(alice_brand).points_balance == 49
    charlie_shop.deliver("refunds/create", payload("refunds_create"))
    assert member(charlie_brand).points_balance == 22
    assert member(alice_brand).points_balance == 49
    # Alice's secret can't speak for charlie's store, nor the other way round.
    before = (state(alice_brand), state(charlie_brand))
    as_charlie = Shopify("charlies-cafe.myshopify.com", ALICE_SECRET)
    assert as_charlie.deliver("customers/create", payload("customers_create")).status_code == 401
    as_alice = Shopify(ALICE_SHOP, CHARLIE_SECRET)
    assert as_alice.deliver("customers/create", payload("customers_create")).status_code == 401
    assert (state(alice_brand), state(charlie_brand)) == before


def test_a_disconnected_store_is_refused(alice_brand, alice_shop):
    from shopify.selectors import connection_get
    from shopify.services import connection_disconnect

    connection_disconnect(connection=connection_get(alice_brand.tenant))
    assert alice_shop.deliver("customers/create", payload("customers_create")).status_code == 401
    assert state(alice_brand)[0] == []


# --- bad input never a server error --------------------------------------------------------

FUZZ = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",
    b"[]",
    b"null",
    b'"a string"',
    b"{" * 5000,
    b'{"id": 1' + b"0" * 5000 + b"}",
    b'{"id": 99999999999999999999999}',
    b'{"id": -4}',
    b'{"id": true}',
    b'{"id": "12x"}',
    b'{"id": 1.5}',
    b'{"id": {"nested": 1}}',
    b'{"id": 1, "customer": "bob"}',
    b'{"id": 1, "customer": {"id": 2}}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "1e999999", "currency": "USD"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": 1e400, "currency": "USD"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "NaN", "currency": "USD"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "-5", "currency": "USD"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": [], "currency": "USD"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "5", "currency": 840}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "5", "currency": "USD",'
    b' "created_at": "2024-13-45T99:00:00Z"}',
    b'{"id": 1, "customer": {"id": 2}, "subtotal_price": "5", "currency": "USD",'
    b' "created_at": "2024-11-20T10:00:00"}',
    b'{"id": 1, "customer": {"id": 2, "email": "a\\u0000b@x.com", "first_name": "\\u0000",'
    b' "phone": 12, "tags": ["x"]}, "subtotal_price": "5.001", "currency": "USD",'
    b' "created_at": "2024-11-20T10:00:00Z"}',
    b'{"id": 1, "customer": {"id": 2, "first_name": "' + b"x" * 500 + b'",'
    b' "tags": "' + b"t, " * 400 + b'"}}',
    b'{"id": 1, "order_id": 5, "refund_line_items": {"a": 1}}',
    b'{"id": 1, "order_id": 5, "refund_line_items": [1, 2]}',
    b'{"id": 1, "order_id": 5, "refund_line_items": [{"subtotal": "x"}]}',
    b'{"id": 1, "order_id": 5, "refund_line_items": [{"subtotal_set": {"shop_money": 3}}]}',
]


@pytest.mark.parametrize(
    "topic",
    ["orders/paid", "orders/create", "refunds/create", "customers/create", "customers/update"],
)
def test_fuzzed_bodies_never_cause_a_server_error(alice_brand, alice_shop, topic):
    for n, body in enumerate(FUZZ):
        response = alice_shop.deliver(topic, body, webhook_id=f"fuzz-{n}")
        assert response.status_code == 200, (body[:80], response.status_code, response.content)
        assert response.json()["outcome"] in {"refused", "ignored", "applied"}, body[:80]
    with tenant_scope(alice_brand.tenant):
        # One of them is a payable order whose unusable profile fields are left out.
        assert list(Order.objects.values_list("order_id", "subtotal")) in (
            [],
            [("1", Decimal("5.00"))],
        )
        assert not Member.objects.exclude(email="", first_name="", phone=None).exists()
