"""A store per brand, and a Shopify that signs and delivers webhooks to us."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from django.test import Client

from shopify.services import connection_save

PAYLOADS = Path(__file__).parent / "payloads"
ALICE_SHOP = "alices-bakery.myshopify.com"
ALICE_SECRET = "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"
CHARLIE_SHOP = "charlies-cafe.myshopify.com"
CHARLIE_SECRET = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class Shopify:
    """Delivers webhooks as Shopify does: the raw JSON body, signed with the store's secret."""

    def __init__(self, shop: str, secret: str):
        self.shop, self.secret = shop, secret
        self.client = Client()

    def deliver(self, topic: str, body, *, webhook_id: str | None = None, **overrides):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": self.shop,
            "X-Shopify-Hmac-Sha256": sign(self.secret, raw),
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-API-Version": "2024-10",
            "X-Shopify-Triggered-At": "2024-11-20T21:42:09.123456789Z",
        }
        for name, value in overrides.items():
            header = "X-Shopify-" + name.replace("_", "-")
            if value is None:
                headers.pop(header, None)
            else:
                headers[header] = value
        return self.client.post(
            "/webhooks/shopify", data=raw, content_type="application/json", headers=headers
        )


@pytest.fixture
def alice_shop(alice_brand) -> Shopify:
    connection_save(tenant=alice_brand.tenant, shop_domain=ALICE_SHOP, secret=ALICE_SECRET)
    return Shopify(ALICE_SHOP, ALICE_SECRET)


@pytest.fixture
def charlie_shop(charlie_brand) -> Shopify:
    connection_save(tenant=charlie_brand.tenant, shop_domain=CHARLIE_SHOP, secret=CHARLIE_SECRET)
    return Shopify(CHARLIE_SHOP, CHARLIE_SECRET)
