"""Delivery receipts: monotonic and idempotent (architecture.md, Reliability design).

A receipt moves a text forward only: a duplicate, or a `sent` arriving after `delivered`,
changes nothing. A text whose carrier call had no answer (`unknown`) is settled by any
receipt.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentSource, MessageStatus, OutboundMessage, Subscriber
from messaging.services.subscribers import Evidence, subscriber_opt_out

logger = logging.getLogger(__name__)

CARRIER_STATUS = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.CANCELED,
}
RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.DEFERRED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.UNKNOWN: 1,
    MessageStatus.SENT: 2,
}
FINAL = 3  # delivered, undelivered, failed, canceled, suppressed, expired


def _rank(status: str) -> int:
    return RANK.get(status, FINAL)


@transaction.atomic
def status_receive(*, message: OutboundMessage, params: dict, now: datetime) -> bool:
    """Apply one receipt (Twilio's status-callback parameters). True if it changed the text."""
    with tenant_scope(message.tenant):
        message = OutboundMessage.objects.select_for_update().get(pk=message.pk)
        carrier_sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if message.carrier_sid and carrier_sid != message.carrier_sid:
            logger.warning(
                "receipt for %s names %s, not its carrier sid %s: ignored",
                message.pk,
                carrier_sid,
                message.carrier_sid,
            )
            return False
        new = CARRIER_STATUS.get((params.get("MessageStatus") or "").lower())
        if new is None or _rank(new) <= _rank(message.status):
            return False
        error_code = params.get("ErrorCode") or ""
        message.status = new
        message.error_code = error_code[:10]
        fields = ["status", "error_code", "updated_at"]
        if not message.carrier_sid:
            message.carrier_sid = carrier_sid
            fields.append("carrier_sid")
        if message.sent_at is None:
            message.sent_at = now
            fields.append("sent_at")
        if new == MessageStatus.DELIVERED:
            message.delivered_at = now
            fields.append("delivered_at")
        if _rank(new) == FINAL:
            message.finished_at = now
            fields.append("finished_at")
        message.save(update_fields=fields)
        if error_code == "21610":
            subscriber_opt_out(
                subscriber=Subscriber.objects.get(pk=message.subscriber_id),
                evidence=Evidence(source=ConsentSource.CARRIER, extra={"error_code": "21610"}),
                now=now,
                confirm=False,
            )
        return True


def sandbox_receipts_deliver(*, until: float | None = None) -> int:
    """Apply the sandbox carrier's due receipts, exactly as Twilio's would be applied."""
    from messaging.gateways.sandbox import receipts_due

    applied = 0
    while True:
        due = receipts_due(until=until)
        if not due:
            return applied
        ids = {message_id for _, message_id, *_ in due}
        # WARNING: all tenants' messages named by the receipts; each applied in its own scope.
        messages = OutboundMessage.objects.unscoped().select_related("tenant").in_bulk(ids)
        for _tenant_id, message_id, sid, status, error_code in due:
            message = messages.get(message_id)
            if message is None:
                continue
            params = {"MessageSid": sid, "MessageStatus": status}
            if error_code:
                params["ErrorCode"] = error_code
            applied += status_receive(message=message, params=params, now=timezone.now())
