"""The sandbox: texts no real phone. It answers like a carrier and reports delivery through
the same status-callback handling as Twilio's receipts, a moment later, with an occasional
failure — so a new brand and the demo see the whole lifecycle without a carrier account.

Pending receipts wait in a Redis sorted set (score: when they are due), written as the sandbox
takes each text — like a carrier, it reports on what it took whatever becomes of the sender —
and `receipts_due`, run by beat every two seconds, hands the due ones to the status service.
One small write per text, no broker message per text. While that Redis is unreachable the
sandbox takes nothing (a temporary error: the dispatcher retries later).

Numbers that behave like Twilio's test numbers: +15005550001 / +15005550009 are refused as
invalid / not mobile (21211 / 21614), +15005550004 has opted out at the carrier (21610).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time

import redis
from django.conf import settings

from messaging.gateways.base import GatewayError, OutcomeUnknown, Outgoing, Sent
from messaging.models import Sender
from messaging.ratelimit import redis_client

REFUSING_NUMBERS = {
    "+15005550001": ("21211", "The 'To' number is not a valid phone number.", False),
    "+15005550009": ("21614", "'To' number is not a valid mobile number", False),
    "+15005550004": ("21610", "Attempt to send to unsubscribed recipient", True),
}
FAILURE_RATE = 0.02  # of texts that end undelivered
SENT_AFTER = 0.5  # seconds
DELIVERED_AFTER = (1.0, 4.0)  # seconds, spread by the message sid
RECEIPTS_KEY = "loyaltysms:sandbox:receipts"

# Pops up to ARGV[2] receipts due by ARGV[1] (unix seconds) in one atomic step, so two
# workers never deliver the same receipt.
POP_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


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

    async def send_async(self, message: Outgoing) -> Sent:
        sent, receipts = _take(message)
        try:
            # Off the carrier loop: a slow Redis must not hold every sender's requests.
            await asyncio.to_thread(_queue_receipts, receipts)
        except redis.TimeoutError as exc:
            # The write may have been done: taken or not is unknown, like a carrier's timeout.
            raise OutcomeUnknown(f"No answer from the sandbox: {exc}") from exc
        except redis.RedisError as exc:
            raise GatewayError(f"Sandbox unavailable: {exc}", code="sandbox") from exc
        return sent


def _take(message: Outgoing) -> tuple[Sent, dict[str, float]]:
    """The carrier's answer to one text, and its receipts with the time each is due."""
    refused = REFUSING_NUMBERS.get(message.to)
    if refused is not None:
        code, text, opted_out = refused
        raise GatewayError(f"Sandbox 400: {text}", code=code, permanent=True, opted_out=opted_out)
    sid = "SM" + secrets.token_hex(16)
    final, error_code, delay = receipt_plan(sid)
    now = time.time()
    receipts = {
        json.dumps([message.tenant_id, message.message_id, sid, "sent", ""]): now + SENT_AFTER,
        json.dumps([message.tenant_id, message.message_id, sid, final, error_code]): now + delay,
    }
    return Sent(carrier_sid=sid, status="queued"), receipts


def _queue_receipts(receipts: dict[str, float]) -> None:
    redis_client(settings.REDIS_URL).zadd(RECEIPTS_KEY, receipts)


def receipts_due(*, until: float | None = None, limit: int = 1000) -> list[tuple]:
    """Take the receipts due by `until` (unix time, default now): [(tenant_id, message_id,
    sid, status, error_code)], oldest first."""
    client = redis_client(settings.REDIS_URL)
    due = client.eval(POP_DUE, 1, RECEIPTS_KEY, until if until is not None else time.time(), limit)
    return [tuple(json.loads(item)) for item in due]
