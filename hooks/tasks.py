"""Celery entry points of the outgoing webhooks: thin wrappers around hooks.services."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from hooks.models import WebhookEndpoint
from hooks.services.delivery import deliveries_purge, deliveries_send, endpoints_due
from hooks.services.fan_out import (
    events_fan_out,
    events_mark_without_endpoints,
    tenants_to_fan_out,
)
from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task

# One task per brand (fan-out) or endpoint (delivery) queued at a time is enough: beat and
# the fan-out send one at most once per this many seconds.
DEBOUNCE = 30
# A delivery task stops claiming after this long and hands over to a fresh task.
DELIVER_SECONDS = 60


def _key(kind: str, id: int) -> str:
    return f"hooks-{kind}-queued:{id}"


def _wake(task, key: str, *args) -> bool:
    if cache.add(key, 1, DEBOUNCE):
        task.delay(*args)
        return True
    return False


@tenant_task(queue=Queue.HOOKS)
def hooks_fan_out(tenant: Tenant) -> int:
    """The brand's new outbox events written as deliveries; then its endpoints woken."""
    cache.delete(_key("fan-out", tenant.pk))
    fanned = events_fan_out(tenant=tenant, now=timezone.now())
    if fanned:
        for endpoint_id in WebhookEndpoint.objects.filter(active=True).values_list("pk", flat=True):
            _wake(hooks_deliver, _key("deliver", endpoint_id), tenant.pk, endpoint_id)
    return fanned


@tenant_task(queue=Queue.HOOKS)
def hooks_deliver(tenant: Tenant, endpoint_id: int) -> dict:
    """The endpoint's due deliveries sent, until none is due or the time is up (then a fresh
    task carries on)."""
    cache.delete(_key("deliver", endpoint_id))
    sent = deliveries_send(
        tenant=tenant, endpoint_id=endpoint_id, now=timezone.now, seconds=DELIVER_SECONDS
    )
    if sent.more:
        hooks_deliver.delay(tenant.pk, endpoint_id)
    return vars(sent)


@shared_task(route_queue=Queue.HOOKS.value)
def hooks_tick() -> dict:
    """Beat's entry (every 5 s): events of brands without endpoints marked; a fan-out task
    per brand with new events; a delivery task per endpoint with deliveries due (retries
    come due here). WARNING: reads every tenant's outbox marker and pending deliveries."""
    now = timezone.now()
    with_endpoints, without = tenants_to_fan_out()
    marked = events_mark_without_endpoints(tenant_ids=without, now=now)
    fan_outs = sum(
        _wake(hooks_fan_out, _key("fan-out", tenant_id), tenant_id) for tenant_id in with_endpoints
    )
    deliveries = sum(
        _wake(hooks_deliver, _key("deliver", endpoint_id), tenant_id, endpoint_id)
        for tenant_id, endpoint_id in endpoints_due(now)
    )
    return {"marked": marked, "fan_outs": fan_outs, "deliveries": deliveries}


@shared_task(route_queue=Queue.HOOKS.value)
def hooks_purge() -> int:
    """Beat's entry (hourly): settled deliveries past their keeping time deleted."""
    return deliveries_purge(now=timezone.now())
