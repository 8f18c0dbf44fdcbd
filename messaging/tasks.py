"""Celery entry points of the SMS channel: thin wrappers around messaging.services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task
from messaging.attribution import attribute_recent_orders
from messaging.services.dispatch import dispatch_due as dispatch
from messaging.services.dispatch import sending_settle_stale, unknown_reconcile
from messaging.services.imports import subscriber_import_run
from messaging.services.status import sandbox_receipts_deliver

# Sending threads per dispatcher process: two per sender served at once (their batches
# overlap), so eight senders at a time.
DISPATCH_CONCURRENCY = 16
# Claims stop after this long (a claimed batch still finishes), far below the task time limit:
# a task killed mid-batch leaves its claimed texts `sending` until settle_stale_sends.
DISPATCH_SECONDS = 60


@shared_task(route_queue=Queue.DISPATCH.value)
def dispatch_due() -> dict:
    """Send every due text. Woken after texts are queued, and by beat every few seconds for
    deferred texts whose moment has come."""
    report = dispatch(concurrency=DISPATCH_CONCURRENCY, max_seconds=DISPATCH_SECONDS)
    if report.unfinished:
        dispatch_due.delay()  # the rest in a fresh task, well inside the time limit
    return vars(report)


@shared_task(route_queue=Queue.DISPATCH.value)
def settle_stale_sends() -> int:
    """Texts a dead dispatcher left `sending` are settled (the ones it handed over become
    `unknown`, the others are queued again); then the carrier is asked about every `unknown`
    one."""
    now = timezone.now()
    return sending_settle_stale(now=now) + unknown_reconcile(now=now)


@shared_task(route_queue=Queue.WEBHOOKS.value)
def sandbox_receipts() -> int:
    """Beat's entry (every 2 s): the sandbox carrier's due delivery receipts, through the same
    handling as Twilio's."""
    return sandbox_receipts_deliver()


@tenant_task(queue=Queue.DEFAULT)
def import_subscribers(tenant: Tenant, import_id: int) -> None:
    """A dashboard CSV of consented numbers, imported while the page shows progress."""
    subscriber_import_run(tenant=tenant, import_id=import_id, now=timezone.now())


@shared_task(route_queue=Queue.SCANS.value)
def attribute_orders() -> int:
    """Beat's entry (every minute): credit new orders to the texts that earned them."""
    return attribute_recent_orders(now=timezone.now())
