"""Outgoing webhooks: the brand's endpoints and every delivery made to them.

A delivery is one event for one endpoint. It is written when the event is fanned out
(hooks.services.fan_out) and kept, with its payload and the outcome of its last attempt, as
the endpoint's delivery log. Deliveries of one member (or number) go out in the order they
were written, one at a time per endpoint (hooks.services.delivery).
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from loyaltysms.models import TenantOwnedModel


class HookEvent(models.TextChoices):
    """The outbox kinds an endpoint may subscribe to."""

    POINTS_EARNED = "points_earned", "Points earned"
    TIER_CHANGED = "tier_changed", "Tier changed"
    SMS_SUBSCRIBED = "sms_subscribed", "Subscribed to texts"
    SMS_UNSUBSCRIBED = "sms_unsubscribed", "Unsubscribed from texts"
    REWARD_REDEEMED = "reward_redeemed", "Reward redeemed"


# The kind of the deliveries the "Send test event" button makes (no outbox event behind them).
TEST_EVENT = "test"
LOCAL_HOSTS = {"localhost", "127.0.0.1"}


def validate_endpoint_url(value: str) -> None:
    """https to a public address. With HOOKS_ALLOW_PRIVATE_URLS (development, tests), also
    http://localhost and private addresses; the sender checks the resolved address again."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValidationError("Enter a full URL, like https://example.com/hooks/loyalty.")
    if django_settings.HOOKS_ALLOW_PRIVATE_URLS:
        if parts.scheme == "https" or (parts.scheme == "http" and host in LOCAL_HOSTS):
            return
        raise ValidationError("Use an https:// URL (http:// only for localhost).")
    if parts.scheme != "https":
        raise ValidationError("Use an https:// URL.")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if (
        host in LOCAL_HOSTS
        or host.endswith((".local", ".internal", ".localhost"))
        or (address is not None and not address.is_global)
    ):
        raise ValidationError("The URL must reach a public address, not this network's own.")


def validate_events(value: list[str]) -> None:
    unknown = sorted(set(value) - set(HookEvent.values))
    if unknown:
        raise ValidationError(f"Unknown events: {', '.join(unknown)}.")
    if not value:
        raise ValidationError("Choose at least one event.")


class WebhookEndpoint(TenantOwnedModel):
    """A URL of the brand's that is sent the events it subscribes to, signed with its secret."""

    url = models.URLField(max_length=500, validators=[validate_endpoint_url])
    description = models.CharField(max_length=200, blank=True)
    events = ArrayField(models.CharField(max_length=24), validators=[validate_events])
    # Fernet under FIELD_ENCRYPTION_KEY (messaging.crypto); shown in full only when made.
    secret_encrypted = models.BinaryField()
    secret_hint = models.CharField(max_length=8)  # its last characters, to tell secrets apart
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "active"], name="hookendpoint_tenant")]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class WebhookDelivery(TenantOwnedModel):
    """One event for one endpoint: pending until a 2xx answer, failed after days of trying."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    event_id = models.BigIntegerField(null=True, blank=True)  # None: a test event
    event_kind = models.CharField(max_length=24)
    # Whose event ("m<member id>", "s<subscriber id>" for a number that isn't a member): the
    # deliveries of one key go out one at a time, in id order.
    member_key = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A replay's original (the log shows where a copy came from).
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The claim: an endpoint's due deliveries …
            models.Index(
                fields=["tenant", "endpoint", "next_attempt_at"],
                condition=Q(status="pending"),
                name="hookdelivery_due",
            ),
            # … each only if no older one of its member is still pending.
            models.Index(
                fields=["tenant", "endpoint", "member_key", "id"],
                condition=Q(status="pending"),
                name="hookdelivery_member_queue",
            ),
            # The log: newest first, by status or all.
            models.Index(fields=["tenant", "endpoint", "-id"], name="hookdelivery_log"),
            models.Index(
                fields=["tenant", "endpoint", "status", "-id"], name="hookdelivery_log_status"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_kind} → {self.endpoint_id} ({self.status})"

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, indent=2, ensure_ascii=False)
