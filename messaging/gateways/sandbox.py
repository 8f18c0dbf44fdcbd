"""The sandbox: texts no real phone. It answers like a carrier and reports delivery through
the same status-callback handling as Twilio's receipts, a moment later, with an occasional
failure — so a new brand and the demo see the whole lifecycle without a carrier account.

Numbers that behave like Twilio's test numbers: +15005550001 / +15005550009 are refused as
invalid / not mobile (21211 / 21614), +15005550004 has opted out at the carrier (21610).
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction

from messaging.gateways.base import GatewayError, Outgoing, Sent
from messaging.models import Sender

REFUSING_NUMBERS = {
    "+15005550001": ("21211", "The 'To' number is not a valid phone number.", False),
    "+15005550009": ("21614", "'To' number is not a valid mobile number", False),
    "+15005550004": ("21610", "Attempt to send to unsubscribed recipient", True),
}
FAILURE_RATE = 0.02  # of texts that end undelivered
SENT_AFTER = 0.5  # seconds
DELIVERED_AFTER = (1.0, 4.0)  # seconds, spread by the message sid


def receipt_plan(carrier_sid: str) -> tuple[str, str, float]:
    """(final status, error code, seconds after sending) — fixed by the sid, so a test can
    predict it."""
    digest = int(hashlib.sha256(carrier_sid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    low, high = DELIVERED_AFTER
    delay = low + (high - low) * digest
    if digest < FAILURE_RATE:
        return "undelivered", "30003", delay
    return "delivered", "", delay


class SandboxGateway:
    def __init__(self, sender: Sender):
        self.sender = sender

    def send(self, message: Outgoing) -> Sent:
        refused = REFUSING_NUMBERS.get(message.to)
        if refused is not None:
            code, text, opted_out = refused
            raise GatewayError(
                f"Sandbox 400: {text}", code=code, permanent=True, opted_out=opted_out
            )
        sid = "SM" + secrets.token_hex(16)
        from messaging.tasks import sandbox_receipt

        final, error_code, delay = receipt_plan(sid)

        def schedule():
            sandbox_receipt.apply_async(
                args=[message.tenant_id, message.message_id, sid, "sent", ""],
                countdown=SENT_AFTER,
            )
            sandbox_receipt.apply_async(
                args=[message.tenant_id, message.message_id, sid, final, error_code],
                countdown=delay,
            )

        transaction.on_commit(schedule)
        return Sent(carrier_sid=sid, status="queued")
