"""Celery entry points of the SMS channel: thin wrappers around messaging.services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task
from messaging.models import OutboundMessage
from messaging.services.dispatch import dispatch_due as dispatch
from messaging.services.dispatch import sending_settle_stale
from messaging.services.status import status_receive

# Threads sending at once per dispatcher process: enough for a 1,000 MPS sender.
DISPATCH_CONCURRENCY = 16


@shared_task(route_queue=Queue.DISPATCH.value)
def dispatch_due() -> dict:
    """Send every due text. Woken after texts are queued, and by beat every few seconds for
    deferred texts whose moment has come."""
    return vars(dispatch(concurrency=DISPATCH_CONCURRENCY))


@shared_task(route_queue=Queue.DISPATCH.value)
def settle_stale_sends() -> int:
    return sending_settle_stale(now=timezone.now())


@tenant_task(queue=Queue.WEBHOOKS)
def sandbox_receipt(
    tenant: Tenant, message_id: int, carrier_sid: str, status: str, error_code: str
) -> bool:
    """The sandbox carrier's delivery receipt, through the same handling as Twilio's."""
    message = OutboundMessage.objects.filter(pk=message_id).first()
    if message is None:
        return False
    params = {"MessageSid": carrier_sid, "MessageStatus": status}
    if error_code:
        params["ErrorCode"] = error_code
    return status_receive(message=message, params=params, now=timezone.now())
