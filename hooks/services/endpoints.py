"""A brand's webhook endpoints and what the dashboard does to their deliveries.

Every change leaves an audit row. The signing secret is random, stored encrypted
(messaging.crypto), and handed back in full only by the two services that make one:
endpoint_create and endpoint_secret_roll.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from hooks.models import (
    TEST_EVENT,
    DeliveryStatus,
    HookEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from hooks.services.fan_out import iso
from loyaltysms.models import Tenant, User
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt, encrypt

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class NewSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown to the person once; stored only encrypted


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _set_secret(endpoint: WebhookEndpoint, secret: str) -> None:
    endpoint.secret_encrypted = encrypt(secret)
    endpoint.secret_hint = secret[-4:]


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The secret deliveries are signed with (for the sender only; never shown again)."""
    return decrypt(endpoint.secret_encrypted)


def _clean(endpoint: WebhookEndpoint) -> None:
    endpoint.events = [e for e in HookEvent.values if e in set(endpoint.events)]  # stable order
    endpoint.full_clean(exclude=["tenant", "secret_encrypted", "secret_hint"])


@transaction.atomic
def endpoint_create(
    *, tenant: Tenant, url: str, events: list[str], description: str = "", actor: User | None
) -> NewSecret:
    """A new active endpoint with a new secret (returned here, and never again)."""
    secret = _new_secret()
    with tenant_scope(tenant):
        endpoint = WebhookEndpoint(tenant=tenant, url=url, events=events, description=description)
        _set_secret(endpoint, secret)
        _clean(endpoint)
        endpoint.save()
    audit(tenant=tenant, actor=actor, action="webhook.created", target=url, events=events)
    return NewSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str,
    events: list[str],
    description: str,
    actor: User | None,
) -> WebhookEndpoint:
    """New URL, events, description: deliveries already written keep their payloads and go
    to the new URL."""
    endpoint.url, endpoint.events, endpoint.description = url, events, description
    _clean(endpoint)
    endpoint.save(update_fields=["url", "events", "description", "updated_at"])
    audit(tenant=endpoint.tenant, actor=actor, action="webhook.updated", target=url, events=events)
    return endpoint


@transaction.atomic
def endpoint_set_active(
    *, endpoint: WebhookEndpoint, active: bool, now: datetime, actor: User | None
) -> int:
    """Enable or disable. Disabling cancels the pending deliveries (how many): a disabled
    endpoint is sent nothing, and nothing piles up for it; events while it is disabled
    aren't written for it at all."""
    canceled = 0
    with tenant_scope(endpoint.tenant):
        if not active:
            canceled = WebhookDelivery.objects.filter(
                endpoint=endpoint, status=DeliveryStatus.PENDING
            ).update(status=DeliveryStatus.CANCELED, last_error="Canceled: endpoint disabled")
        endpoint.active = active
        endpoint.save(update_fields=["active", "updated_at"])
    audit(
        tenant=endpoint.tenant,
        actor=actor,
        action="webhook.enabled" if active else "webhook.disabled",
        target=endpoint.url,
        canceled=canceled,
    )
    return canceled


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint, actor: User | None) -> None:
    """The endpoint and its delivery log are deleted."""
    url = endpoint.url
    with tenant_scope(endpoint.tenant):
        WebhookDelivery.objects.filter(endpoint=endpoint).delete()
        endpoint.delete()
    audit(tenant=endpoint.tenant, actor=actor, action="webhook.deleted", target=url)


@transaction.atomic
def endpoint_secret_roll(*, endpoint: WebhookEndpoint, actor: User | None) -> NewSecret:
    """A new secret, in use from the next attempt on (retries included); the old one stops
    at once."""
    secret = _new_secret()
    _set_secret(endpoint, secret)
    endpoint.save(update_fields=["secret_encrypted", "secret_hint", "updated_at"])
    audit(tenant=endpoint.tenant, actor=actor, action="webhook.secret_rolled", target=endpoint.url)
    return NewSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def endpoint_test_send(
    *, endpoint: WebhookEndpoint, now: datetime, actor: User | None
) -> WebhookDelivery:
    """A "test" delivery to the endpoint (whatever its events), signed like any other."""
    tenant = endpoint.tenant
    with tenant_scope(tenant):
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=None,
            event_kind=TEST_EVENT,
            member_key="test",
            payload={
                "id": None,
                "type": TEST_EVENT,
                "created_at": iso(now),
                "brand": tenant.slug,
                "member": None,
                "data": {"message": "A test event from loyaltysms: your endpoint works."},
            },
            next_attempt_at=now,
            created_at=now,
        )
    audit(tenant=tenant, actor=actor, action="webhook.test_sent", target=endpoint.url)
    return delivery


@transaction.atomic
def delivery_replay(
    *, delivery: WebhookDelivery, now: datetime, actor: User | None
) -> WebhookDelivery:
    """Send a finished delivery again, as a new pending copy with the same payload.

    A copy rather than a reset: the original keeps its history in the log, and the copy
    has a delivery id of its own, so a receiver that dedupes by X-Loyaltysms-Delivery
    processes it (a replay is asked for because the receiver needs the event again). The
    copy queues behind the member's pending deliveries like any new one."""
    if delivery.status == DeliveryStatus.PENDING:
        raise ValidationError("This delivery is still pending: use Retry now.")
    with tenant_scope(delivery.tenant):
        if not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, active=True).exists():
            raise ValidationError("Enable the endpoint first: a disabled endpoint is sent nothing.")
        copy = WebhookDelivery.objects.create(
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_kind=delivery.event_kind,
            member_key=delivery.member_key,
            payload=delivery.payload,
            next_attempt_at=now,
            replay_of=delivery,
            created_at=now,
        )
    audit(
        tenant=delivery.tenant,
        actor=actor,
        action="webhook.replayed",
        target=str(delivery.pk),
        copy=copy.pk,
    )
    return copy


@transaction.atomic
def delivery_retry_now(*, delivery: WebhookDelivery, now: datetime, actor: User | None) -> bool:
    """A pending delivery due now rather than at its next retry (it still waits for its
    member's older pending ones). False if it isn't pending any more."""
    with tenant_scope(delivery.tenant):
        updated = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING
        ).update(next_attempt_at=now)
    if updated:
        audit(
            tenant=delivery.tenant, actor=actor, action="webhook.retried", target=str(delivery.pk)
        )
    return bool(updated)
