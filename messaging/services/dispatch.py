"""The dispatcher: due texts → compliance gate → paced sends through the sender's gateway.

Exactly once in our books, at most once to the carrier (architecture.md, Reliability):
1. Claim: due rows are taken with FOR UPDATE SKIP LOCKED (any number of dispatchers), the
   gate runs with the subscribers locked (so two claims can't both use one cap slot), and each
   text leaves as `sending` (committed), `deferred` to its next allowed moment, `suppressed`
   or `expired`. A claim takes about CHUNK_SECONDS of its sender's sending.
2. Send: per claimed batch, in one transaction that holds its subscribers' rows FOR SHARE
   across the carrier calls: consent is checked again, the texts are handed to the carrier
   at their slots (the sender's pace, on the process's carrier loop), each marked as handed
   over just before it leaves (messaging.handover), the outcomes recorded in one statement.
   A STOP is written with the subscriber row locked for update, so it waits for a batch
   sending to that number (at most about CHUNK_SECONDS) and every later batch sees it: once
   a STOP is acknowledged, nothing more goes to that number.
One dispatcher serves a sender at a time (a lease in Redis), with two batches in flight so
the pace has no gap between them; other dispatchers serve other senders.
A text whose carrier call got no answer becomes `unknown`, never re-sent. A dispatcher that
died mid-send leaves its batch `sending`: `sending_settle_stale` puts the texts it never handed
over back in the queue and turns the others `unknown` (a carrier's receipt still settles them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from psycopg2.extras import execute_values

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging import aio, handover
from messaging.compliance import (
    marketing_send_time,
    next_window_time,
    place_of,
    recipient_zones,
    window_for,
)
from messaging.crypto import SecretUnreadable
from messaging.gateways import (
    GatewayError,
    OutcomeUnknown,
    Outgoing,
    Sent,
    concurrency_for,
    gateway_for,
)
from messaging.handover import MARK_AHEAD
from messaging.models import (
    DUE_STATUSES,
    ConsentSource,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Sender,
    SenderKind,
    Subscriber,
    SubscriberStatus,
)
from messaging.ratelimit import Pacer, SenderLease
from messaging.services.outbound import public_base_url
from messaging.services.setup import messaging_settings_get, sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_out

logger = logging.getLogger(__name__)

BATCH = 500
# A text still `sending` this long after its claim lost its dispatcher mid-send.
STALE_SENDING = timedelta(minutes=10)
# The longest a batch may go on sending after its claim: half STALE_SENDING, so a stalled
# dispatcher can't send a text that has been settled (and maybe claimed again) meanwhile.
BATCH_SECONDS = STALE_SENDING.total_seconds() / 2
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
OPTED_OUT_CODES = frozenset({"21610"})


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
    not_handed_over: int = 0  # back in the queue: their marks couldn't be written
    unfinished: bool = False  # stopped at its time limit with texts possibly still due

    def add(self, other: DispatchReport) -> None:
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# A marketing text claimed this close to the end of its window waits for the next one: its
# batch may leave seconds after the claim, and a slow carrier stretches that.
SEND_MARGIN = timedelta(minutes=1)
# One claim covers this much of its sender's sending: the texts are claimed, locked and sent
# as a batch, so a STOP waits at most about this long for a send under way to its number.
CHUNK_SECONDS = 0.5
# Batches of one sender in flight at once: while one is sending, the next is claimed and
# locked, so the pace has no gap between batches.
LANES_PER_SENDER = 2


def dispatch_due(
    *,
    now: Callable[[], datetime] = timezone.now,
    batch: int = BATCH,
    max_batches: int | None = None,
    concurrency: int = 1,
    max_seconds: float | None = None,
    sender_ids: Collection[int] | None = None,
) -> DispatchReport:
    """Send every due text (or `max_batches` claims, or what can be claimed within
    `max_seconds`; `report.unfinished` then says more may be due). `now` is the clock, so
    tests can run the gate at any hour; `sender_ids` limits the run to those senders (a
    replay of one brand's past must not send other brands' texts on its clock).

    Each sender is served by one dispatcher at a time (its lease, messaging.ratelimit): here,
    with up to LANES_PER_SENDER threads of `concurrency` (each with a database connection of
    its own), or in the calling thread when `concurrency` is 1. A sender another dispatcher
    is serving is left to it."""
    run = _Run(now, batch, max_batches, max_seconds)
    if sender_ids is None:
        _adopt_orphans(now())
    while not run.over():
        due = _due_senders(now())
        if sender_ids is not None:
            due = [sender_id for sender_id in due if sender_id in sender_ids]
        if not due or not run.serve(due, concurrency):
            break
    return run.report


class _Run:
    """One dispatcher run: its limits, its report, and the senders it serves."""

    def __init__(self, now, batch, max_batches, max_seconds):
        self.now, self.batch = now, batch
        self.max_batches, self.max_seconds = max_batches, max_seconds
        self.started = time.monotonic()
        self.report = DispatchReport()
        self.batches = 0
        self.lock = threading.Lock()

    def over(self) -> bool:
        with self.lock:
            if self.max_batches is not None and self.batches >= self.max_batches:
                return True
            if self.max_seconds is not None and time.monotonic() - self.started > self.max_seconds:
                self.report.unfinished = True
                return True
            return False

    def add(self, result: DispatchReport) -> None:
        with self.lock:
            self.report.add(result)

    def claim(self, sender_id: int, size: int) -> list[OutboundMessage] | None:
        """The next batch to send (empty when the gate deferred or refused all it claimed);
        None when nothing is due or the run is over."""
        if self.over():
            return None
        counted = DispatchReport()
        claimed = _claim(self.now(), size, counted, sender_ids=[sender_id])
        with self.lock:
            self.batches += 1
        self.add(counted)
        return claimed

    def serve(self, sender_ids: list[int], concurrency: int) -> bool:
        """Serve each of these senders until its due texts are sent; False if another
        dispatcher holds every one of them."""
        if concurrency <= 1:
            return any([self.serve_sender(sender_id, lanes=1) for sender_id in sender_ids])
        lanes = min(LANES_PER_SENDER, concurrency)
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for sender_id in sender_ids:
            todo.put(sender_id)
        served = []

        def work() -> None:
            try:
                while True:
                    try:
                        sender_id = todo.get_nowait()
                    except queue.Empty:
                        return
                    served.append(self.serve_sender(sender_id, lanes=lanes))
            finally:
                connection.close()

        workers = min(len(sender_ids), max(1, concurrency // lanes))
        _in_threads([work] * workers)
        return any(served)

    def serve_sender(self, sender_id: int, *, lanes: int) -> bool:
        lease = SenderLease(sender_id)
        if not lease.acquire():
            return False
        pacer = None
        try:
            # WARNING: any tenant's sender; its texts are then handled in its tenant's scope.
            sender = Sender.objects.unscoped().select_related("tenant").filter(pk=sender_id)
            sender = sender.first()
            if sender is None:
                return True
            pacer = Pacer(sender.mps, lease.recent_sends(), concurrency=concurrency_for(sender))
            size = max(1, min(self.batch, math.ceil(sender.mps * CHUNK_SECONDS)))

            def lane() -> None:
                # A lease lost (this process stalled past its time to live) may be another
                # dispatcher's now: stop rather than pace the sender twice.
                with handover.Marker() as marker:
                    while lease.renew() and (messages := self.claim(sender.pk, size)) is not None:
                        if not messages:
                            continue
                        deadline = time.monotonic() + BATCH_SECONDS
                        result = _send_batch(messages, sender, pacer, marker, deadline, self.now)
                        self.add(result)
                        if result.not_handed_over:
                            logger.error("marks can't be written: sender %s paused", sender.pk)
                            return

            if lanes <= 1:
                lane()
            else:
                _in_threads([lane] * lanes, close_connections=True)
            return True
        finally:
            lease.release(pacer.recent() if pacer is not None else [])


def _in_threads(targets: list[Callable[[], None]], *, close_connections: bool = False) -> None:
    """Run each target in a thread of its own and wait for all; an exception in one is
    raised here once all have ended."""
    errors: list[BaseException] = []

    def run(target):
        try:
            target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            if close_connections:
                connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


DUE_SENDERS = """
SELECT s.id FROM messaging_sender s
WHERE EXISTS (
    SELECT 1 FROM messaging_outboundmessage m
    WHERE m.sender_id = s.id AND m.status IN ('queued', 'deferred') AND m.send_after <= %s
)
ORDER BY s.id
"""


def _due_senders(now: datetime) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(DUE_SENDERS, [now])
        return [row[0] for row in cursor.fetchall()]


def _adopt_orphans(now: datetime) -> None:
    """Due texts whose sender was deleted go through their brand's default sender."""
    # WARNING: every tenant's orphaned texts; each tenant's get its own default sender.
    orphans = OutboundMessage.objects.unscoped().filter(
        status__in=DUE_STATUSES, send_after__lte=now, sender__isnull=True
    )
    for tenant_id in set(orphans.values_list("tenant_id", flat=True)):
        tenant = Tenant.objects.get(pk=tenant_id)
        with tenant_scope(tenant):
            OutboundMessage.objects.filter(status__in=DUE_STATUSES, sender__isnull=True).update(
                sender=sender_default(tenant)
            )


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
      {also}
    ORDER BY m.send_after, m.id
    LIMIT greatest(0, least(greatest(1, s.mps * %s), %s) - (
        SELECT count(*) FROM messaging_outboundmessage t
        WHERE t.id = ANY(%s::bigint[]) AND t.sender_id = s.id
    ))
    FOR UPDATE OF m SKIP LOCKED
) due
WHERE %s::bigint[] IS NULL OR s.id = ANY(%s::bigint[])
ORDER BY due.send_after, due.id
LIMIT %s
"""
# Answers to people (opt-out and opt-in confirmations, HELP, order updates) go before a
# campaign's backlog on the same sender: a STOP's confirmation may not wait behind 10,000
# marketing texts. The partial index outbound_due_transactional finds them without walking
# the backlog.
CLAIM_TRANSACTIONAL = CLAIM_DUE.format(also="AND m.kind = 'transactional' AND %s::bool")
# Rows this transaction locked already aren't skipped by SKIP LOCKED: left out by id.
CLAIM_ANY = CLAIM_DUE.format(also="AND m.id <> ALL(%s::bigint[])")


def _claim(
    now: datetime, batch: int, report: DispatchReport, *, sender_ids: list[int] | None = None
) -> list[OutboundMessage] | None:
    """Claim one batch of due texts (of these senders, or of all) and run the gate on each.
    None: nothing was due."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Each sender's share is capped at the batch too: rows the lateral part locks are
            # held until this claim commits, and concurrent claims must find the rest.
            cursor.execute(
                CLAIM_TRANSACTIONAL,
                [now, True, CLAIM_SECONDS, batch, [], sender_ids, sender_ids, batch],
            )
            ids = [row[0] for row in cursor.fetchall()]
            if len(ids) < batch:
                # Each sender's share counts what it got above.
                cursor.execute(
                    CLAIM_ANY,
                    [now, ids, CLAIM_SECONDS, batch, ids, sender_ids, sender_ids, batch - len(ids)],
                )
                ids += [row[0] for row in cursor.fetchall()]
        if not ids:
            return None
        # WARNING: every tenant's due texts; each is then handled in its own tenant's scope.
        due = OutboundMessage.objects.unscoped().select_related("tenant")
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
    messages: list[OutboundMessage],
    now: datetime,
    report: DispatchReport,
    *,
    lock: bool = True,
    statuses: dict[int, str] | None = None,
) -> list[OutboundMessage]:
    tenant = messages[0].tenant
    settings = messaging_settings_get(tenant)
    default_sender = sender_default(tenant)
    subscriber_ids = sorted({m.subscriber_id for m in messages})
    # Locked in id order (no deadlocks between claims): a concurrent claim for the same
    # subscriber waits, then sees the sends counted here.
    rows = Subscriber.objects.filter(pk__in=subscriber_ids).order_by("pk")
    if lock:
        rows = rows.select_for_update(no_key=True)
    subscribers = {s.pk: s for s in rows}
    for subscriber_id, status in (statuses or {}).items():
        if subscriber_id in subscribers:
            subscribers[subscriber_id].status = status  # read only, never saved
    longest = max(settings.cap_hours, 24)
    recent: dict[int, list[datetime]] = defaultdict(list)
    marketing_to = {m.subscriber_id for m in messages if m.kind == MessageKind.MARKETING}
    for subscriber_id, sending_at in OutboundMessage.objects.filter(
        subscriber__in=marketing_to,
        kind=MessageKind.MARKETING,
        sending_at__gt=now - timedelta(hours=longest),
        sending_at__lte=now,  # (a dry run's `now` is in the past: later sends don't count)
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
        refusal = consent_refusal(message, subscriber) or simulator_refusal(
            message, senders.get(message.sender_id, default_sender)
        )
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
            allowed_at = functools.partial(
                marketing_send_time,
                zones=zones,
                brand_zone=tenant.timezone,
                window=window,
                recent_sends=recent[subscriber.pk],
                cap_messages=settings.cap_messages,
                cap_hours=settings.cap_hours,
                region=subscriber.region,
            )
            allowed = allowed_at(now)
            if allowed <= now:
                # It must still be allowed when its batch leaves, seconds after this claim
                # (more when the carrier is slow): not in the window's last SEND_MARGIN.
                later = now + SEND_MARGIN
                at_margin = allowed_at(later)
                if at_margin > later:
                    allowed = at_margin
            if allowed > now:
                if message.expires_at is not None and message.expires_at <= allowed:
                    _finish(message, MessageStatus.EXPIRED, now, "expires before it may be sent")
                    report.expired += 1
                    continue
                probe = now + SEND_MARGIN
                quiet = (next_window_time(probe, zones, window) or probe) > probe
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


def gate_dry(
    messages: list[OutboundMessage],
    now: datetime,
    report: DispatchReport,
    *,
    statuses: dict[int, str],
) -> list[OutboundMessage]:
    """The dispatcher's decision for texts of one brand, recorded on them (those that may
    go now come back marked `sending`; the others are deferred for quiet hours or caps,
    suppressed or expired), for a caller that sends nothing: a flow's dry run, inside a
    transaction it rolls back. It locks no subscriber (a real STOP must never wait for a dry
    run) and reads consent from `statuses` (subscriber id → status then) where given."""
    return _gate(messages, now, report, lock=False, statuses=statuses)


def _record_gate(
    changed: list[OutboundMessage], to_send: list[OutboundMessage], now: datetime, default_sender
) -> None:
    """Write the gate's decisions in a few grouped UPDATEs (not one statement per text)."""
    rows = OutboundMessage.objects.filter
    if to_send:
        with connection.cursor() as cursor:
            claim = handover.new_claim(cursor)
        for message in to_send:
            message.claim = claim
        rows(pk__in=[m.pk for m in to_send]).update(
            status=MessageStatus.SENDING,
            status_reason="",
            sending_at=now,
            attempts=F("attempts") + 1,
            claim=claim,
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


def simulator_refusal(message: OutboundMessage, sender: Sender) -> str:
    """The phone simulator's numbers are texted through the sandbox only: a brand that tried
    its flows on them, then connected Twilio, never texts whoever may own them."""
    from messaging.simulator import TEST_NUMBER_SET  # the simulator drives the webhooks

    if message.to in TEST_NUMBER_SET and sender.kind != SenderKind.SANDBOX:
        return "a phone simulator number: texted through the sandbox only"
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


# The batch's texts locked for their outcomes, and their subscribers' rows shared (in id
# order, like the gate's, so the two never deadlock): a STOP (which updates that row) waits
# for a batch sending to that number to finish, and a batch waits for a STOP under way.
#
# The outcomes are committed without waiting for the disk: if the database crashed before
# flushing them, the texts would still be `sending` under their claim with their hand-over
# marks (removed only after this commit, by one that does wait for the disk, which flushes
# this one too), so the sent ones become `unknown` — never sent twice — and the flush wait
# buys nothing.
LOCK_BATCH = """
SELECT m.id, m.status, m.claim, s.status
FROM messaging_outboundmessage m JOIN messaging_subscriber s ON s.id = m.subscriber_id
WHERE m.id = ANY(%s)
ORDER BY s.id, m.id
FOR NO KEY UPDATE OF m FOR SHARE OF s
"""
RECORD_OUTCOMES = """
UPDATE messaging_outboundmessage m
SET status = v.status, status_reason = v.status_reason, error_code = v.error_code,
    carrier_sid = v.carrier_sid, attempts = v.attempts, claim = NULL, send_after = v.send_after,
    sending_at = v.sending_at, sent_at = v.sent_at, finished_at = v.finished_at,
    updated_at = v.updated_at
FROM (VALUES %s) AS v(id, status, status_reason, error_code, carrier_sid, attempts,
                      send_after, sending_at, sent_at, finished_at, updated_at)
WHERE m.id = v.id
"""
OUTCOME_ROW = (
    "(%s::bigint, %s, %s, %s, %s, %s::smallint, %s::timestamptz, %s::timestamptz,"
    " %s::timestamptz, %s::timestamptz, %s::timestamptz)"
)


def _send_batch(
    messages: list[OutboundMessage],
    sender: Sender,
    pacer: Pacer,
    marker: handover.Marker,
    deadline: float,
    clock: Callable[[], datetime] = timezone.now,
) -> DispatchReport:
    """Hand a claimed batch of one sender's texts to its carrier, paced, and record the
    outcomes — all in one transaction that holds the subscribers' rows (see the module doc)."""
    report = DispatchReport()
    # Once requests may have left, a failure leaves the texts `sending` (then `unknown`).
    progress = {"handed_over": False, "marked": []}
    try:
        with tenant_scope(sender.tenant):
            opted_out = _send_locked(
                messages, sender, pacer, marker, deadline, clock, report, progress
            )
            if progress["handed_over"]:  # outcomes committed: the marks have done their job
                marker.forget(progress["marked"])
            # Numbers the carrier says opted out, each in a transaction of its own after the
            # batch's: two batches holding one subscriber's row shared can't deadlock on it.
            for message in opted_out:
                with transaction.atomic():
                    _carrier_opt_out(message, message.finished_at or clock())
    except Exception:
        if not progress["handed_over"]:
            _release(messages)
        raise
    return report


def _release(messages: list[OutboundMessage]) -> None:
    """Texts claimed but never handed to the carrier (the batch failed before its first
    request) go back to the queue as they were, instead of waiting to become `unknown`."""
    # WARNING: ids of one claimed batch; a plain status change back to queued.
    for claim in {m.claim for m in messages}:
        OutboundMessage.objects.unscoped().filter(
            pk__in=[m.pk for m in messages], status=MessageStatus.SENDING, claim=claim
        ).update(
            status=MessageStatus.QUEUED, sending_at=None, claim=None, attempts=F("attempts") - 1
        )


def _send_locked(
    messages, sender, pacer, marker, deadline, clock, report, progress
) -> list[OutboundMessage]:
    """The batch's transaction; returns its texts the carrier refused as opted out."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(LOCK_BATCH, [[m.pk for m in messages]])
        found = {row[0]: row[1:] for row in cursor.fetchall()}
        now = clock()
        done, to_send = [], []
        for message in messages:
            message_status, claim, subscriber_status = found.get(message.pk, (None, None, None))
            if message_status != MessageStatus.SENDING or claim != message.claim:
                continue  # settled meanwhile (stale, canceled), maybe claimed again: not ours
            done.append(message)
            refusal = consent_refusal(message, Subscriber(status=subscriber_status))
            if refusal:
                _finish(message, MessageStatus.SUPPRESSED, now, refusal)
                report.suppressed += 1
            else:
                to_send.append(message)
        try:
            gateway = gateway_for(sender)
        except SecretUnreadable as exc:
            for message in to_send:
                _finish(message, MessageStatus.FAILED, now, str(exc))
                report.failed += 1
            to_send = []
        if to_send:
            outgoing = [_outgoing(message, now) for message in to_send]
            progress["handed_over"] = True
            marks = [(m.pk, m.claim) for m in to_send]
            progress["marked"] = marks
            results = aio.run(_paced(gateway, pacer, marker, outgoing, marks, deadline))
            sent_at = clock()  # when the carrier took them
            for message, result in zip(to_send, results, strict=True):
                _outcome(message, result, now, sent_at, report)
        if done:
            _record_outcomes(cursor, done, clock())
    return [
        m for m in done if m.error_code in OPTED_OUT_CODES and m.status == MessageStatus.SUPPRESSED
    ]


class NotHandedOver(Exception):
    """The text was not sent: its mark could not be written, or its batch ran out of time (it
    goes back to the queue)."""


async def _paced(
    gateway,
    pacer: Pacer,
    marker: handover.Marker,
    outgoing: list[Outgoing],
    marks: list[tuple[int, int]],
    deadline: float,
) -> list:
    """Send each text at its slot (on the carrier loop), marked as handed over first (its
    (id, claim) in `marks`); the carrier's answers, or the exceptions raised, in order. Texts
    of one batch to one number go one after another. If a mark fails, or the batch is still
    sending at `deadline` (time.monotonic()), no text from there on is sent."""
    requests, last = [], {}
    slots = pacer.reserve(len(outgoing))
    loop = asyncio.get_running_loop()
    marked_until = 0

    async def mark(index: int, slot: float) -> None:
        # At the slot, before the send (the pacer then records the real send time): the texts
        # due within MARK_AHEAD of this one's slot — one at a time up to 100 texts/s, even when
        # the sender is behind, so a crash strands at most that many marked and not sent.
        nonlocal marked_until
        horizon = slot + MARK_AHEAD
        upto = index + 1
        while upto < len(outgoing) and slots[upto] < horizon:
            upto += 1
        await loop.run_in_executor(marker.executor, marker.mark, marks[index:upto])
        marked_until = upto

    for index, (item, slot) in enumerate(zip(outgoing, slots, strict=True)):
        try:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the batch ran past its {BATCH_SECONDS:.0f} s")
            prepare = functools.partial(mark, index, slot) if index >= marked_until else None
            await pacer.until(slot, prepare=prepare)
        except Exception as exc:
            unsent = NotHandedOver(f"not sent: {exc}")
            logger.warning("batch stopped before %s texts: %s", len(outgoing) - index, exc)
            requests += [_failed(unsent) for _ in outgoing[index:]]
            break
        request = asyncio.ensure_future(_send_after(gateway, item, last.get(item.to)))
        request.add_done_callback(lambda _: pacer.finished())
        requests.append(request)
        last[item.to] = request
    return await asyncio.gather(*requests, return_exceptions=True)


def _failed(exc: Exception) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def _send_after(gateway, item: Outgoing, previous: asyncio.Future | None):
    if previous is not None:
        try:
            await previous
        except GatewayError as exc:
            if exc.opted_out:  # the number opted out at the carrier: not even attempted
                raise
        except Exception:  # noqa: S110 - the previous text's own outcome, recorded with it
            pass
    return await gateway.send_async(item)


def _outgoing(message: OutboundMessage, now: datetime) -> Outgoing:
    return Outgoing(
        to=message.to,
        body=message.body,
        status_callback=status_callback_url(message),
        expires_at=message.expires_at,
        now=now,
        message_id=message.pk,
        tenant_id=message.tenant_id,
    )


def _outcome(
    message: OutboundMessage, result, now: datetime, sent_at: datetime, report: DispatchReport
) -> None:
    if isinstance(result, Sent):
        message.status = MessageStatus.SENT
        message.carrier_sid = result.carrier_sid
        message.sent_at = sent_at
        report.sent += 1
    elif isinstance(result, GatewayError):
        _carrier_refused(message, result, now, report)
    elif isinstance(result, SecretUnreadable):
        _finish(message, MessageStatus.FAILED, now, str(result))
        report.failed += 1
    elif isinstance(result, NotHandedOver):
        # Not sent; tried again after the first back-off (what kept the marks from being
        # written, or the batch on time, may still be there).
        _requeue(message, str(result))
        message.send_after = now + RETRY_BACKOFF[0]
        report.not_handed_over += 1
    else:
        # No answer (OutcomeUnknown), or anything unexpected once the request may have left:
        # never sent again; the receipt or reconciliation settles it.
        message.status = MessageStatus.UNKNOWN
        message.status_reason = str(result)[:200]
        report.unknown += 1
        if isinstance(result, OutcomeUnknown):
            logger.warning("message %s: outcome unknown: %s", message.pk, result)
        else:
            logger.error("message %s: send raised", message.pk, exc_info=result)


def _record_outcomes(cursor, messages: list[OutboundMessage], now: datetime) -> None:
    rows = [
        (
            m.pk,
            m.status,
            m.status_reason,
            m.error_code,
            m.carrier_sid,
            m.attempts,
            m.send_after,
            m.sending_at,
            m.sent_at,
            m.finished_at,
            now,
        )
        for m in messages
    ]
    execute_values(cursor.cursor, RECORD_OUTCOMES, rows, template=OUTCOME_ROW, page_size=1000)


def _carrier_refused(
    message: OutboundMessage, exc: GatewayError, now: datetime, report: DispatchReport
) -> None:
    """compliance.md, Carrier errors."""
    message.error_code = exc.code[:10]
    if exc.opted_out:
        # The number is unsubscribed once the batch's outcomes are written (_carrier_opt_out).
        _finish(message, MessageStatus.SUPPRESSED, now, f"opted out at the carrier ({exc.code})")
        report.suppressed += 1
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


def _requeue(message: OutboundMessage, reason: str) -> None:
    """A text that never left: back in the queue as it was before its claim."""
    message.status = MessageStatus.QUEUED
    message.status_reason = reason[:200]
    message.sending_at = None
    message.attempts -= 1


def _carrier_opt_out(message: OutboundMessage, now: datetime) -> None:
    subscriber = Subscriber.objects.get(pk=message.subscriber_id)
    subscriber_opt_out(
        subscriber=subscriber,
        evidence=Evidence(source=ConsentSource.CARRIER, extra={"error_code": message.error_code}),
        now=now,
        confirm=False,
    )


def sending_settle_stale(*, now: datetime) -> int:
    """Texts left `sending` by a dispatcher that died mid-send (messaging.handover): those its
    claim marked as handed over may have reached the carrier and become `unknown`, never sent
    again (a late receipt still settles them), as do those claimed by a release that kept no
    claim numbers; those never marked go back to the queue, where the gate decides again.
    Stale means STALE_SENDING past the claim, twice the longest a batch may send
    (BATCH_SECONDS), so no live dispatcher can still be about to send one. Returns the texts
    settled."""
    with transaction.atomic(), connection.cursor() as cursor:
        # WARNING: every tenant's stale texts; plain status changes, no per-tenant logic.
        stale = dict(
            OutboundMessage.objects.unscoped()
            .filter(status=MessageStatus.SENDING, sending_at__lt=now - STALE_SENDING)
            .select_for_update(skip_locked=True)
            .values_list("pk", "claim")[:10000]
        )
        handed_over = handover.marked(cursor, list(stale)) if stale else set()
        unsent = [pk for pk, claim in stale.items() if claim is not None and pk not in handed_over]
        unknown = [pk for pk in stale if pk not in unsent]
        rows = OutboundMessage.objects.unscoped().filter
        rows(pk__in=unknown).update(
            status=MessageStatus.UNKNOWN,
            status_reason="the dispatcher stopped while sending it; not sent again",
            claim=None,
            updated_at=now,
        )
        rows(pk__in=unsent).update(
            status=MessageStatus.QUEUED,
            status_reason="the dispatcher stopped before sending it; queued again",
            sending_at=None,
            claim=None,
            attempts=F("attempts") - 1,
            updated_at=now,
        )
        if unknown:
            handover.forget_texts(cursor, unknown)
        handover.purge(cursor, now - STALE_SENDING)
        return len(stale)


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
