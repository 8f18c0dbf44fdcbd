"""The webhooks fuzzed with mutated signed requests: take a request the carrier or Shopify
signed, change one thing (a parameter's value, a byte of the body, a character of the
signature, the URL, a header), and it is refused with nothing written — every time."""

from __future__ import annotations

import json

from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import InboundMessage, Subscriber
from messaging.services.setup import sender_default
from programs.models import Member
from shopify.models import ShopifyWebhook
from shopify.services import connection_save

from .messaging.conftest import BASE, Phone
from .shopify.conftest import ALICE_SECRET, ALICE_SHOP, Shopify, payload, sign

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INBOUND = "/webhooks/twilio/inbound"


def _changed(original: str, replacement: str) -> str:
    return replacement if replacement != original else replacement + "x"


@st.composite
def twilio_mutation(draw, params: dict) -> tuple[dict, str | None, str | None]:
    """(params sent, the signature's change, the URL signed) — one thing differs."""
    kind = draw(st.sampled_from(["value", "add", "drop", "signature", "url"]))
    sent = dict(params)
    if kind == "value":
        key = draw(st.sampled_from(sorted(params)))
        sent[key] = _changed(params[key], draw(st.text(max_size=30)))
        return sent, None, None
    if kind == "add":
        name = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefz", min_size=1, max_size=8))
        sent[name if name not in params else name + "Z"] = draw(st.text(max_size=10))
        return sent, None, None
    if kind == "drop":
        sent.pop(draw(st.sampled_from(sorted(params))))
        return sent, None, None
    if kind == "signature":
        return sent, draw(st.text(min_size=1, max_size=40)), None
    return (
        sent,
        None,
        BASE + draw(st.sampled_from(["/webhooks/twilio/status", "/x", INBOUND + "/"])),
    )


def test_mutated_twilio_requests_are_all_refused(alice_brand):
    phone = Phone("+12125550199", sender_default(alice_brand.tenant), Client())
    params = phone.params("STOP")

    @FUZZ
    @given(mutation=twilio_mutation(params))
    def check(mutation):
        sent, signature, url = mutation
        if signature is None:
            signature = RequestValidator(phone.token).compute_signature(
                url or BASE + INBOUND, params
            )
        else:
            good = RequestValidator(phone.token).compute_signature(BASE + INBOUND, params)
            signature = _changed(good, signature)
        response = Client().post(INBOUND, sent, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 403, (mutation, response.status_code)
        with tenant_scope(alice_brand.tenant):
            assert not InboundMessage.objects.exists() and not Subscriber.objects.exists()

    check()
    # The unmutated request goes through: the fuzzer's refusals are the signature's doing.
    assert phone.text("STOP").status_code == 200


@st.composite
def shopify_mutation(draw, raw: bytes, signature: str) -> tuple[bytes, dict]:
    kind = draw(st.sampled_from(["byte", "append", "signature", "shop", "drop"]))
    headers = {
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Shop-Domain": "alices-bakery.myshopify.com",
    }
    if kind == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        new = draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
        return raw[:at] + bytes([new]) + raw[at + 1 :], headers
    if kind == "append":
        return raw + draw(st.binary(min_size=1, max_size=20)), headers
    if kind == "signature":
        headers["X-Shopify-Hmac-Sha256"] = _changed(signature, draw(st.text(max_size=60)).strip())
        return raw, headers
    if kind == "shop":
        headers["X-Shopify-Shop-Domain"] = draw(
            st.sampled_from(["charlies-cafe.myshopify.com", "x.myshopify.com", ""])
        )
        return raw, headers
    headers.pop(draw(st.sampled_from(sorted(headers))))
    return raw, headers


def test_mutated_shopify_webhooks_are_all_refused(alice_brand):
    connection_save(tenant=alice_brand.tenant, shop_domain=ALICE_SHOP, secret=ALICE_SECRET)
    alice_shop = Shopify(ALICE_SHOP, ALICE_SECRET)
    raw = json.dumps(payload("orders_paid")).encode()
    signature = sign(ALICE_SECRET, raw)

    @FUZZ
    @given(mutation=shopify_mutation(raw, signature))
    def check(mutation):
        body, headers = mutation
        response = Client().post(
            "/webhooks/shopify",
            data=body,
            content_type="application/json",
            headers={**headers, "X-Shopify-Topic": "orders/paid", "X-Shopify-Webhook-Id": "w-1"},
        )
        assert response.status_code == 401, (mutation, response.status_code)
        with tenant_scope(alice_brand.tenant):
            assert not Member.objects.exists() and not ShopifyWebhook.objects.exists()

    check()
    assert alice_shop.deliver("orders/paid", payload("orders_paid")).status_code == 200
