"""A brand's Shopify store and the webhook deliveries it sent us."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models

from loyaltysms.models import TenantOwnedModel

# What Shopify sends in X-Shopify-Shop-Domain: the store's permanent myshopify.com name, never
# a custom domain (a store's own domain can change; this can't).
SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}\.myshopify\.com$")


def validate_shop_domain(value: str) -> None:
    if not SHOP_DOMAIN.match(value or ""):
        raise ValidationError(
            f"{value!r} is not a Shopify store's domain: use its myshopify.com name, "
            "like alices-bakery.myshopify.com."
        )


class ShopifyConnection(TenantOwnedModel):
    """One Shopify store per brand. The signing secret is stored encrypted (messaging.crypto)
    and never rendered back; a store belongs to one brand only."""

    shop_domain = models.CharField(
        max_length=80,
        unique=True,
        validators=[validate_shop_domain],
        error_messages={"unique": "This store is connected to another brand."},
    )
    secret_encrypted = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="shopify_connection_one_per_tenant")
        ]

    def __str__(self) -> str:
        return self.shop_domain


class WebhookOutcome(models.TextChoices):
    APPLIED = "applied", "Applied"
    IGNORED = "ignored", "Ignored"
    REFUSED = "refused", "Refused"


class ShopifyWebhook(TenantOwnedModel):
    """A signed delivery, written in the same transaction as what it did: its id (Shopify's
    X-Shopify-Webhook-Id, the same on every retry) is unique per brand, so a replay finds
    this row and changes nothing."""

    webhook_id = models.CharField(max_length=100)
    topic = models.CharField(max_length=60)
    subject = models.CharField(max_length=100, blank=True)  # e.g. "order 5678901234"
    outcome = models.CharField(max_length=8, choices=WebhookOutcome.choices)
    detail = models.CharField(max_length=300, blank=True)  # why ignored or refused
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "webhook_id"], name="shopify_webhook_id")
        ]
        indexes = [
            models.Index(fields=["tenant", "-received_at"], name="shopify_webhook_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.webhook_id}"
