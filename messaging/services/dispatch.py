"""The dispatcher: due texts → compliance gate → paced sends through the sender's gateway.

Exactly once in our books, at most once to the carrier (architecture.md, Reliability):
1. Claim: due rows are taken with FOR UPDATE SKIP LOCKED (any number of dispatchers), the
   gate runs with the subscribers locked (so two claims can't both use one cap slot), and each
   text leaves as `sending` (committed), `deferred` to its next allowed moment, `suppressed`
   or `expired`.
2. Send: per text, in one short transaction that holds the subscriber row FOR SHARE across
   the carrier call: consent is checked again, the carrier is called, the outcome recorded.
   A STOP is written with the subscriber row locked for update, so it waits for a send to
   that number already under way and every later send sees it: once a STOP is acknowledged,
   nothing more goes to that number.
A text whose carrier call got no answer becomes `unknown`, never re-sent; a dispatcher that
died mid-send leaves `sending`, which `sending_settle_stale` turns into `unknown`.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.compliance import (
    marketing_send_time,
    next_window_time,
    place_of,
    recipient_zones,
    window_for,
)
from messaging.crypto import SecretUnreadable
from messaging.gateways import GatewayError, OutcomeUnknown, Outgoing, gateway_for
from messaging.models import (
    DUE_STATUSES,
    ConsentSource,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Sender,
    Subscriber,
    SubscriberStatus,
)
from messaging.ratelimit import wait_for_slot, wait_for_window
from messaging.services.outbound import public_base_url
from messaging.services.setup import messaging_settings_get, sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_out

logger = logging.getLogger(__name__)

BATCH = 500
# A text still `sending` this long after its claim lost its dispatcher mid-send.
STALE_SENDING = timedelta(minutes=10)
RETRY_BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
)
# Marketing texts that count toward caps: everything handed to the carrier, or on its way.
CAP_COUNTED = (
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.UNKNOWN,
)
# Texts that may go to a number that has unsubscribed: the confirmation of that opt-out, and
# the answer to a HELP the person sent (CTIA: HELP is answered whatever the opt-in status).
ANSWERS_TO_UNSUBSCRIBED = frozenset({"opt_out", "help"})


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    suppressed: int = 0
    expired: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    unfinished: bool = False  # stopped at its time limit with texts possibly still due

    def add(self, other: DispatchReport) -> None:
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def dispatch_due(
    *,
    now: Callable[[], datetime] = timezone.now,
    batch: int = BATCH,
    max_batches: int | None = None,
    concurrency: int = 1,
    max_seconds: float | None = None,
) -> DispatchReport:
    """Send every due text (or `max_batches` claims of `batch`, or what can be claimed within
    `max_seconds`; `report.unfinished` then says more may be due). `now` is the clock, so
    tests can run the gate at any hour."""
    report = DispatchReport()
    started = time.monotonic()
    claims = _Claims(now, batch, max_batches, max_seconds, started, report)
    first = claims.next()
    if not first:
        return report
    if concurrency > 1 and len(first) > 1:
        _send_in_threads(first, claims, now, concurrency, report)
        return report
    while first:
        for message in first:
            report.add(send_one(message, clock=now))
        first = claims.next()
    return report


class _Claims:
    """The batches of one dispatcher run, claimed one at a time, until nothing is due, the
    run's batch count is reached or its time is up."""

    def __init__(self, now, batch, max_batches, max_seconds, started, report):
        self.now, self.batch = now, batch
        self.max_batches, self.max_seconds, self.started = max_batches, max_seconds, started
        self.report = report
        self.batches = 0
        self.finished = False
        self.lock = threading.Lock()
        self.report_lock = threading.Lock()  # sending threads add to the same report

    def next(self) -> list[OutboundMessage]:
        with self.lock:
            if self.finished:
                return []
            if self.max_batches is not None and self.batches >= self.max_batches:
                self.finished = True
                return []
            if self.max_seconds is not None and time.monotonic() - self.started > self.max_seconds:
                self.report.unfinished = True
                self.finished = True
                return []
            counted = DispatchReport()
            claimed = _claim(self.now(), self.batch, counted)
            with self.report_lock:
                self.report.add(counted)
            if claimed is None:
                self.finished = True
                return []
            self.batches += 1
            return claimed


def _send_in_threads(
    first: list[OutboundMessage],
    claims: _Claims,
    now: Callable[[], datetime],
    concurrency: int,
    report: DispatchReport,
) -> None:
    """Send from several threads (carrier calls are mostly waiting). The thread that finds the
    queue empty claims the next batch while the others are still sending, so a sender's pace
    has no gap between batches. Each thread has its own database connection, closed at the
    end."""
    pending: queue.SimpleQueue[OutboundMessage] = queue.SimpleQueue()
    for message in first:
        pending.put(message)
    lock = claims.report_lock

    def work() -> None:
        try:
            while True:
                try:
                    message = pending.get_nowait()
                except queue.Empty:
                    more = claims.next()
                    if not more:
                        return
                    for message in more:
                        pending.put(message)
                    continue
                result = send_one(message, clock=now)
                with lock:
                    report.add(result)
        finally:
            connection.close()

    # Threads beyond what the senders' pace needs (one per 20 sends a second) would only
    # queue for slots far ahead and add jitter.
    pace = sum({m.sender_id: m.sender.mps for m in first}.values())
    threads = [
        threading.Thread(target=work, name=f"dispatch-{n}")
        for n in range(min(concurrency, max(1, math.ceil(pace / 20))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# Due texts, oldest first, but at most CLAIM_SECONDS of sending per sender: a slow sender's
# backlog neither starves the other senders nor sits claimed (`sending`) for long.
CLAIM_SECONDS = 10
CLAIM_DUE = """
SELECT due.id
FROM messaging_sender s
CROSS JOIN LATERAL (
    SELECT m.id, m.send_after
    FROM messaging_outboundmessage m
    WHERE m.sender_id = s.id AND m.status IN ('queued', 'deferred') AND m.send_after <= %s
    ORDER BY m.send_after, m.id
    LIMIT least(greatest(1, s.mps * %s), %s)
    FOR UPDATE OF m SKIP LOCKED
) due
ORDER BY due.send_after, due.id
LIMIT %s
"""


def _claim(now: datetime, batch: int, report: DispatchReport) -> list[OutboundMessage] | None:
    """Claim one batch of due texts and run the gate on each. None: nothing was due."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Each sender's share is capped at the batch too: rows the lateral part locks are
            # held until this claim commits, and concurrent claims must find the rest.
            cursor.execute(CLAIM_DUE, [now, CLAIM_SECONDS, batch, batch])
            ids = [row[0] for row in cursor.fetchall()]
        # WARNING: every tenant's due texts; each is then handled in its own tenant's scope.
        due = OutboundMessage.objects.unscoped().select_related("tenant")
        if len(ids) < batch:
            # Texts whose sender was deleted: the brand's default sender takes them.
            ids += list(
                due.filter(status__in=DUE_STATUSES, send_after__lte=now, sender__isnull=True)
                .order_by("send_after", "id")
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", flat=True)[: batch - len(ids)]
            )
        if not ids:
            return None
        messages = list(due.filter(pk__in=ids).order_by("send_after", "id"))
        report.claimed += len(messages)
        by_tenant = defaultdict(list)
        for message in messages:
            by_tenant[message.tenant_id].append(message)
        to_send = []
        for group in by_tenant.values():
            with tenant_scope(group[0].tenant):
                to_send += _gate(group, now, report)
        return to_send


def _gate(
    messages: list[OutboundMessage], now: datetime, report: DispatchReport
) -> list[OutboundMessage]:
    tenant = messages[0].tenant
    settings = messaging_settings_get(tenant)
    default_sender = sender_default(tenant)
    subscriber_ids = sorted({m.subscriber_id for m in messages})
    # Locked in id order (no deadlocks between claims): a concurrent claim for the same
    # subscriber waits, then sees the sends counted here.
    subscribers = {
        s.pk: s
        for s in Subscriber.objects.filter(pk__in=subscriber_ids)
        .order_by("pk")
        .select_for_update(no_key=True)
    }
    longest = max(settings.cap_hours, 24)
    recent: dict[int, list[datetime]] = defaultdict(list)
    marketing_to = {m.subscriber_id for m in messages if m.kind == MessageKind.MARKETING}
    for subscriber_id, sending_at in OutboundMessage.objects.filter(
        subscriber__in=marketing_to,
        kind=MessageKind.MARKETING,
        sending_at__gt=now - timedelta(hours=longest),
        status__in=CAP_COUNTED,
    ).values_list("subscriber_id", "sending_at"):
        recent[subscriber_id].append(sending_at)

    senders = {
        sender.pk: sender
        for sender in Sender.objects.filter(pk__in={m.sender_id for m in messages if m.sender_id})
    }
    to_send, changed = [], []
    for message in messages:
        subscriber = subscribers[message.subscriber_id]
        changed.append(message)
        refusal = consent_refusal(message, subscriber)
        if message.expires_at is not None and message.expires_at <= now:
            _finish(message, MessageStatus.EXPIRED, now, "expired before it could be sent")
            report.expired += 1
            continue
        if refusal:
            _finish(message, MessageStatus.SUPPRESSED, now, refusal)
            report.suppressed += 1
            continue
        if message.kind == MessageKind.MARKETING:
            zones = (
                (subscriber.timezone,)
                if subscriber.timezone
                else recipient_zones("", place_of(subscriber.e164), tenant.timezone)
            )
            window = window_for(
                subscriber.region, settings.window_start_hour, settings.window_end_hour
            )
            allowed = marketing_send_time(
                now,
                zones=zones,
                brand_zone=tenant.timezone,
                window=window,
                recent_sends=recent[subscriber.pk],
                cap_messages=settings.cap_messages,
                cap_hours=settings.cap_hours,
                region=subscriber.region,
            )
            if allowed > now:
                if message.expires_at is not None and message.expires_at <= allowed:
                    _finish(message, MessageStatus.EXPIRED, now, "expires before it may be sent")
                    report.expired += 1
                    continue
                quiet = (next_window_time(now, zones, window) or now) > now
                message.status = MessageStatus.DEFERRED
                message.send_after = allowed
                message.status_reason = (
                    f"{'quiet hours' if quiet else 'frequency cap'} until "
                    f"{allowed:%Y-%m-%d %H:%M} UTC"
                )
                report.deferred += 1
                continue
            recent[subscriber.pk].append(now)
        message.status = MessageStatus.SENDING
        message.sending_at = now
        message.attempts += 1
        message.sender = senders.get(message.sender_id, default_sender)
        message.sender_id = message.sender.pk
        message.status_reason = ""
        to_send.append(message)
    _record_gate(changed, to_send, now, default_sender)
    return to_send


def _record_gate(
    changed: list[OutboundMessage], to_send: list[OutboundMessage], now: datetime, default_sender
) -> None:
    """Write the gate's decisions in a few grouped UPDATEs (not one statement per text)."""
    rows = OutboundMessage.objects.filter
    if to_send:
        rows(pk__in=[m.pk for m in to_send]).update(
            status=MessageStatus.SENDING,
            status_reason="",
            sending_at=now,
            attempts=F("attempts") + 1,
            sender_id=Coalesce("sender_id", Value(default_sender.pk)),
            updated_at=now,
        )
    groups = defaultdict(list)
    for message in changed:
        if message.status != MessageStatus.SENDING:
            key = (message.status, message.status_reason, message.send_after, message.finished_at)
            groups[key].append(message.pk)
    for (status, reason, send_after, finished_at), ids in groups.items():
        rows(pk__in=ids).update(
            status=status,
            status_reason=reason,
            send_after=send_after,
            finished_at=finished_at,
            updated_at=now,
        )


def consent_refusal(message: OutboundMessage, subscriber: Subscriber) -> str:
    """Why this text may not go to this number now ("" if it may). Transactional texts are
    exempt from caps and quiet hours, never from an opt-out."""
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return "" if message.source in ANSWERS_TO_UNSUBSCRIBED else "unsubscribed"
    if message.kind == MessageKind.MARKETING and subscriber.status != SubscriberStatus.SUBSCRIBED:
        return f"not subscribed ({subscriber.status})"
    return ""


def _finish(message: OutboundMessage, status: str, now: datetime, reason: str) -> None:
    message.status = status
    message.status_reason = reason[:200]
    message.finished_at = now
    message.updated_at = now


def status_callback_url(message: OutboundMessage) -> str:
    # Our message id rides in the URL (covered by Twilio's signature), so a receipt finds its
    # text even if it arrives before the carrier's answer to our request was recorded.
    return f"{_status_base()}?m={message.pk}"


@functools.cache
def _status_base() -> str:
    return public_base_url() + reverse("twilio_status")


# The text locked for its outcome, and its subscriber's row shared: a STOP (which updates
# that row) waits for this send to finish, and this send waits for a STOP under way.
#
# The outcome is committed without waiting for the disk: if the database crashed before
# flushing it, the text would still be `sending` from its claim and become `unknown` —
# never sent twice — so the flush wait (most of a send's database time) buys nothing.
LOCK_FOR_SEND = """
SET LOCAL synchronous_commit TO OFF;
SELECT m.status, s.status
FROM messaging_outboundmessage m JOIN messaging_subscriber s ON s.id = m.subscriber_id
WHERE m.id = %s
FOR NO KEY UPDATE OF m FOR SHARE OF s
"""
RECORD_OUTCOME = """
UPDATE messaging_outboundmessage
SET status = %s, status_reason = %s, error_code = %s, carrier_sid = %s, send_after = %s,
    sending_at = %s, sent_at = %s, finished_at = %s, updated_at = %s
WHERE id = %s
"""


def send_one(
    message: OutboundMessage, *, clock: Callable[[], datetime] = timezone.now
) -> DispatchReport:
    """Hand one claimed text to its carrier and record the outcome (see the module doc)."""
    report = DispatchReport()
    sender = message.sender
    with tenant_scope(message.tenant):
        pace_key = f"sender:{sender.pk}"
        gateway = gateway_for(sender)
        gateway.prepare()
        # Its first call loads the URLconf (a tenth of a second, under the import lock): done
        # before the slot, so no request leaves late and crowds the next ones.
        status_callback_url(message)
        wait_for_slot(pace_key, sender.mps)
        now = clock()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(LOCK_FOR_SEND, [message.pk])
            row = cursor.fetchone()
            if row is None or row[0] != MessageStatus.SENDING:
                return report
            refusal = consent_refusal(message, Subscriber(status=row[1]))
            if refusal:
                _finish(message, MessageStatus.SUPPRESSED, now, refusal)
                report.suppressed += 1
            else:
                # The hard cap, right before the request: a send held up after its slot (a
                # busy CPU, a lock) waits here rather than crowd the next second.
                wait_for_window(pace_key, sender.mps)
                _send(message, gateway, now, report, clock)
            cursor.execute(
                RECORD_OUTCOME,
                [
                    message.status,
                    message.status_reason,
                    message.error_code,
                    message.carrier_sid,
                    message.send_after,
                    message.sending_at,
                    message.sent_at,
                    message.finished_at,
                    clock(),
                    message.pk,
                ],
            )
    return report


def _send(
    message: OutboundMessage,
    gateway,
    now: datetime,
    report: DispatchReport,
    clock: Callable[[], datetime],
) -> None:
    outgoing = Outgoing(
        to=message.to,
        body=message.body,
        status_callback=status_callback_url(message),
        expires_at=message.expires_at,
        now=now,
        message_id=message.pk,
        tenant_id=message.tenant_id,
    )
    try:
        sent = gateway.send(outgoing)
    except OutcomeUnknown as exc:
        message.status = MessageStatus.UNKNOWN
        message.status_reason = str(exc)[:200]
        report.unknown += 1
        logger.warning("message %s: outcome unknown: %s", message.pk, exc)
        return
    except SecretUnreadable as exc:
        _finish(message, MessageStatus.FAILED, now, str(exc))
        report.failed += 1
        return
    except GatewayError as exc:
        _carrier_refused(message, exc, now, report)
        return
    message.status = MessageStatus.SENT
    message.carrier_sid = sent.carrier_sid
    message.sent_at = clock()  # when the carrier took it
    report.sent += 1


def _carrier_refused(
    message: OutboundMessage, exc: GatewayError, now: datetime, report: DispatchReport
) -> None:
    """compliance.md, Carrier errors."""
    message.error_code = exc.code[:10]
    if exc.opted_out:
        _finish(message, MessageStatus.SUPPRESSED, now, f"opted out at the carrier ({exc.code})")
        report.suppressed += 1
        subscriber = Subscriber.objects.get(pk=message.subscriber_id)
        subscriber_opt_out(
            subscriber=subscriber,
            evidence=Evidence(source=ConsentSource.CARRIER, extra={"error_code": exc.code}),
            now=now,
            confirm=False,
        )
    elif exc.permanent:
        status = (
            MessageStatus.SUPPRESSED if exc.code in ("21211", "21614") else MessageStatus.FAILED
        )
        _finish(message, status, now, str(exc))
        if status == MessageStatus.SUPPRESSED:
            report.suppressed += 1
        else:
            report.failed += 1
    elif message.attempts > len(RETRY_BACKOFF):
        _finish(
            message, MessageStatus.FAILED, now, f"gave up after {message.attempts} tries: {exc}"
        )
        report.failed += 1
    else:
        # Temporary (rate limited, carrier error): back in the queue, not counted for caps.
        message.status = MessageStatus.QUEUED
        message.status_reason = f"retry: {exc}"[:200]
        message.send_after = now + RETRY_BACKOFF[message.attempts - 1]
        message.sending_at = None
        report.retried += 1


def sending_settle_stale(*, now: datetime) -> int:
    """Texts left `sending` by a dispatcher that died mid-send become `unknown`: they may have
    reached the carrier, so they are never sent again; a late receipt still settles them."""
    with transaction.atomic():
        # WARNING: every tenant's stale texts; a plain status change, no per-tenant logic.
        stale = list(
            OutboundMessage.objects.unscoped()
            .filter(status=MessageStatus.SENDING, sending_at__lt=now - STALE_SENDING)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:10000]
        )
        return (
            OutboundMessage.objects.unscoped()
            .filter(pk__in=stale)
            .update(
                status=MessageStatus.UNKNOWN,
                status_reason="the dispatcher stopped while sending; not sent again",
                updated_at=now,
            )
        )


# Twilio's statuses before "sent" still prove it took the text.
ACCEPTED = {"accepted", "queued", "scheduled", "sending"}
RECONCILE_AFTER = timedelta(minutes=1)  # give a late receipt the first chance
RECONCILE_WINDOW = timedelta(days=2)


def unknown_reconcile(*, now: datetime, limit: int = 100) -> int:
    """Ask the carrier about texts whose outcome is unknown (no answer to our request): one it
    has is settled like a receipt would; one it doesn't have stays unknown with the finding
    noted — never sent again, since the lookup can't prove a negative."""
    from messaging.gateways.twilio import TwilioGateway
    from messaging.models import SenderKind
    from messaging.services.status import status_receive

    # WARNING: every tenant's unknown texts; each is settled in its own tenant's scope.
    unknown = list(
        OutboundMessage.objects.unscoped()
        .filter(
            status=MessageStatus.UNKNOWN,
            carrier_sid__isnull=True,
            sender__kind=SenderKind.TWILIO,
            sending_at__lt=now - RECONCILE_AFTER,
            sending_at__gt=now - RECONCILE_WINDOW,
        )
        .exclude(status_reason__startswith="not found at the carrier")
        .select_related("tenant", "sender")
        .order_by("sending_at")[:limit]
    )
    settled = 0
    for message in unknown:
        with tenant_scope(message.tenant):
            try:
                found = TwilioGateway.for_sender(message.sender).find(
                    to=message.to, body=message.body, since=message.sending_at - RECONCILE_AFTER
                )
            except (GatewayError, SecretUnreadable) as exc:
                logger.warning("reconciling message %s: %s", message.pk, exc)
                continue
            if found is None:
                OutboundMessage.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN).update(
                    status_reason="not found at the carrier; not sent again", updated_at=now
                )
                continue
            status = "sent" if found.status in ACCEPTED else found.status
            params = {"MessageSid": found.carrier_sid, "MessageStatus": status}
            settled += status_receive(message=message, params=params, now=now)
    return settled
