"""Deliveries sent to an endpoint: signed POSTs, in order per member, retried with backoff.

The claim. A delivery is due when it is pending and its `next_attempt_at` has come, and it
may go only if no older delivery of the same member (`member_key`) to the same endpoint is
still pending: a member's deliveries go out one at a time, in the order they were written.
A delivery that is given up on (failed) or canceled stops holding the ones behind it.

Claims are `FOR UPDATE SKIP LOCKED` in a transaction that stays open while the batch is
sent, and the outcomes are written in that same transaction. So two workers never send the
same delivery at once (the second skips the locked row, and the older-pending check keeps
it off that member's next one too), and a worker that dies mid-send rolls back: the
delivery is still pending and goes again (at least once; receivers dedupe by the
X-Loyaltysms-Delivery header, docs/webhooks.md).

A 2xx answer delivers it. Anything else — another status, a redirect (never followed), a
connection refused, a timeout (5 s to connect, 10 s in all) — is a failed attempt: tried
again after 10 s, then twice as long each time up to an hour, with jitter; a delivery still
failing three days after it was written is failed for good.

The HTTP requests go out concurrently on the process's event loop (messaging.aio) while
this thread, holding the transaction, waits; nothing on the loop touches the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Q

from hooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from hooks.services.endpoints import endpoint_secret
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging import aio

CONNECT_TIMEOUT = 5
TOTAL_TIMEOUT = 10
FIRST_RETRY = 10  # seconds
LONGEST_RETRY = 60 * 60
GIVE_UP_AFTER = timedelta(days=3)
BATCH = 20  # deliveries claimed (and in flight) at once per endpoint
USER_AGENT = "loyaltysms-webhooks/1"

CLAIM_DUE = """
SELECT d.id FROM hooks_webhookdelivery d
WHERE d.tenant_id = %(tenant)s AND d.endpoint_id = %(endpoint)s AND d.status = 'pending'
    AND d.next_attempt_at <= %(now)s
    AND NOT EXISTS (
        SELECT FROM hooks_webhookdelivery o
        WHERE o.tenant_id = d.tenant_id AND o.endpoint_id = d.endpoint_id
            AND o.member_key = d.member_key AND o.status = 'pending' AND o.id < d.id
    )
ORDER BY d.next_attempt_at, d.id
LIMIT %(batch)s
FOR UPDATE SKIP LOCKED
"""
ENDPOINT_LOCK = "SELECT pg_try_advisory_xact_lock(7411, %s::int)"
# WARNING: every tenant's pending deliveries (a small partial index), to find whom to wake.
ENDPOINTS_DUE = """
SELECT DISTINCT d.tenant_id, d.endpoint_id FROM hooks_webhookdelivery d
JOIN hooks_webhookendpoint ep ON ep.id = d.endpoint_id AND ep.active
WHERE d.status = 'pending' AND d.next_attempt_at <= %s
"""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Loyaltysms-Signature value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def retry_delay(attempts: int, jitter: Callable[[], float] = random.random) -> timedelta:
    """After the n-th failed attempt: 10 s doubling, at most an hour, less up to a quarter at
    random (so a receiver coming back isn't hit by every retry in the same second)."""
    seconds = min(LONGEST_RETRY, FIRST_RETRY * 2 ** min(attempts - 1, 20))
    return timedelta(seconds=seconds * (1 - 0.25 * jitter()))


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Request:
    delivery_id: int
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status_code: int | None
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def request_for(delivery: WebhookDelivery, url: str, secret: str, now: datetime) -> Request:
    body = body_of(delivery)
    return Request(
        delivery_id=delivery.pk,
        url=url,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Loyaltysms-Event": delivery.event_kind,
            "X-Loyaltysms-Delivery": str(delivery.pk),
            "X-Loyaltysms-Signature": signature(secret, int(now.timestamp()), body),
        },
        body=body,
    )


class PublicOnlyResolver(aiohttp.ThreadedResolver):
    """Resolves only to public addresses: an endpoint's host name can't reach this network's
    own services (loopback, private, link-local…), even by changing its DNS after it was
    checked — the connection goes to the address checked here."""

    async def resolve(self, host: str, port: int = 0, family=0):
        found = await super().resolve(host, port, family)
        public = [info for info in found if address_allowed(info["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public


def address_allowed(address: str) -> bool:
    if django_settings.HOOKS_ALLOW_PRIVATE_URLS:
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_global
    except ValueError:
        return False


async def _post_all(requests: list[Request]) -> list[Outcome]:
    timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT)
    connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver())
    # A session per batch: its connections are reused within the batch (one endpoint).
    async with aiohttp.ClientSession(
        timeout=timeout, trust_env=False, connector=connector
    ) as session:
        return list(await asyncio.gather(*(_post(session, r) for r in requests)))


async def _post(session: aiohttp.ClientSession, request: Request) -> Outcome:
    host = urlsplit(request.url).hostname or ""
    if _is_ip(host) and not address_allowed(host):  # an address skips the resolver
        return Outcome(request.delivery_id, None, f"{host} is not a public address")
    try:
        async with session.post(
            request.url, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            if 200 <= response.status < 300:
                return Outcome(request.delivery_id, response.status, "")
            text = (await response.content.read(120)).decode(errors="replace")
            error = f"HTTP {response.status}" + (f": {' '.join(text.split())}" if text else "")
            return Outcome(request.delivery_id, response.status, error[:200])
    except TimeoutError:
        return Outcome(request.delivery_id, None, "Timed out")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(request.delivery_id, None, f"{type(exc).__name__}: {exc}"[:200])
    except Exception as exc:  # one odd receiver never rolls back its batch's other outcomes
        return Outcome(request.delivery_id, None, f"{type(exc).__name__}"[:200])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def post_all(requests: list[Request]) -> list[Outcome]:
    """POST every request concurrently and wait for all of their outcomes."""
    return aio.run(_post_all(requests))


@dataclass
class Sent:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    more: bool = False


def deliveries_send(
    *,
    tenant: Tenant,
    endpoint_id: int,
    now: Callable[[], datetime],
    seconds: float | None = None,
    batch: int = BATCH,
    jitter: Callable[[], float] = random.random,
) -> Sent:
    """Send the endpoint's due deliveries, a batch at a time, until none is due (a member's
    next one is due the moment the one before it is delivered) or `seconds` have passed
    (then `more` is True: call again). `now` is the clock, read afresh for each batch."""
    deadline = None if seconds is None else time.monotonic() + seconds
    sent = Sent()
    while True:
        # Until a claim finds nothing: settling a batch makes its members' next ones due.
        if not _send_batch(tenant, endpoint_id, now(), batch, jitter, sent):
            return sent
        if deadline is not None and time.monotonic() > deadline:
            sent.more = True
            return sent


@transaction.atomic
def _send_batch(
    tenant: Tenant,
    endpoint_id: int,
    now: datetime,
    batch: int,
    jitter: Callable[[], float],
    sent: Sent,
) -> int:
    """Claim, send and settle one batch; how many were claimed."""
    with tenant_scope(tenant):
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, active=True).first()
        if endpoint is None:
            return 0
        with connection.cursor() as cursor:
            # One sender per endpoint: a slow receiver holds one worker, not every one.
            cursor.execute(ENDPOINT_LOCK, [endpoint.pk])
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute(
                CLAIM_DUE,
                {"tenant": tenant.pk, "endpoint": endpoint.pk, "now": now, "batch": batch},
            )
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return 0
        deliveries = list(WebhookDelivery.objects.filter(pk__in=ids).order_by("id"))
        secret = endpoint_secret(endpoint)
        outcomes = post_all([request_for(d, endpoint.url, secret, now) for d in deliveries])
        _settle(deliveries, outcomes, now, jitter, sent)
        return len(ids)


def _settle(
    deliveries: list[WebhookDelivery],
    outcomes: list[Outcome],
    now: datetime,
    jitter: Callable[[], float],
    sent: Sent,
) -> None:
    by_id = {d.pk: d for d in deliveries}
    changed = []
    for outcome in outcomes:
        delivery = by_id[outcome.delivery_id]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        if outcome.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            sent.delivered += 1
        elif now - delivery.created_at >= GIVE_UP_AFTER:
            delivery.status = DeliveryStatus.FAILED  # the member's next ones may go now
            sent.failed += 1
        else:
            delivery.next_attempt_at = now + retry_delay(delivery.attempts, jitter)
            sent.retrying += 1
        changed.append(delivery)
    WebhookDelivery.objects.bulk_update(
        changed,
        [
            "attempts",
            "last_attempt_at",
            "last_status_code",
            "last_error",
            "status",
            "delivered_at",
            "next_attempt_at",
        ],
    )


def endpoints_due(now: datetime) -> list[tuple[int, int]]:
    """(tenant id, endpoint id) of the active endpoints with deliveries due.
    WARNING: reads every tenant's pending deliveries."""
    with connection.cursor() as cursor:
        cursor.execute(ENDPOINTS_DUE, [now])
        return cursor.fetchall()


# Deliveries carry members' names, emails and numbers: kept as long as the log is useful.
KEEP_DELIVERED = timedelta(days=30)
KEEP_SETTLED = timedelta(days=90)  # failed or canceled: longer, for investigating


def deliveries_purge(*, now: datetime) -> int:
    """Every brand's settled deliveries past their keeping time deleted (pending ones stay)."""
    deleted, _ = (
        WebhookDelivery.objects.unscoped()
        .filter(
            Q(status=DeliveryStatus.DELIVERED, created_at__lt=now - KEEP_DELIVERED)
            | Q(
                status__in=[DeliveryStatus.FAILED, DeliveryStatus.CANCELED],
                created_at__lt=now - KEEP_SETTLED,
            )
        )
        .delete()
    )
    return deleted
