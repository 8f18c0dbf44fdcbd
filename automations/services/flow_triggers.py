"""What brings people into flows and takes them out: the programs outbox.

Events are read in id order, a batch per transaction, by one worker per brand at a time (an
advisory lock), and locked FOR UPDATE — not SKIP LOCKED: the outgoing webhooks mark the same
rows for a moment (hooks.services.fan_out), and skipping an event would act on a later one
first — matched against the brand's live flows, and marked
processed in the same transaction as the runs they start or end — so an event is acted on
exactly once, and one a worker dies on is simply read again.

An event first ends the runs its exit conditions name (for runs that began before it), then
starts runs of the flows it triggers, with their entry rules: the audience (members, numbers
that aren't members), how often (once ever, once a year, every time — the run's occurrence
is "once", the local year, or the event's id) and the segment filter.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from django.db import DatabaseError, connection, transaction

from automations.models import EntryLimit, Flow, FlowAudience, FlowStatus
from automations.services.flow_engine import Entry, flow_runs_enter, flow_runs_exit
from automations.services.flow_segments import in_segment
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import EventKind
from programs.outbox import OutboxEvent
from programs.services.ledger import tenant_zone

logger = logging.getLogger(__name__)

BATCH = 1000

CLAIM_EVENTS = """
SELECT id, kind, member_id, payload, created_at FROM programs_loyaltyevent
WHERE tenant_id = %s AND processed_at IS NULL
ORDER BY id
LIMIT %s
FOR UPDATE
"""
BRAND_EVENTS_LOCK = "SELECT pg_try_advisory_xact_lock(7301, %s::int)"
MARK_PROCESSED = """
UPDATE programs_loyaltyevent SET processed_at = %s WHERE tenant_id = %s AND id = ANY(%s)
"""
# Members' numbers, for member events (the run texts the member's subscribed number).
NUMBERS = """
SELECT DISTINCT ON (member_id) member_id, id FROM messaging_subscriber
WHERE tenant_id = %s AND member_id = ANY(%s)
ORDER BY member_id, (status = 'subscribed') DESC, id
"""
MEMBERS_OF_NUMBERS = """
SELECT id, member_id FROM messaging_subscriber WHERE tenant_id = %s AND id = ANY(%s)
"""


class Event(OutboxEvent):
    @property
    def trigger(self) -> str:
        """The trigger type this event is (a tier change is an upgrade or a downgrade)."""
        if self.kind == EventKind.TIER_CHANGED:
            return "tier_upgraded" if self.payload.get("direction") == "up" else "tier_downgraded"
        return self.kind


def _matches(flow: Flow, event: Event) -> bool:
    trigger = flow.trigger
    if trigger["type"] != event.trigger:
        return False
    if str(event.payload.get("bonus", "")).startswith("flow:"):
        return False  # points a flow gave start no flow (one on points earned would loop)
    if trigger.get("tier_id") is not None:
        return event.payload.get("to_tier_id") == trigger["tier_id"]
    if trigger.get("sources"):
        return event.payload.get("source") in trigger["sources"]
    return True


def occurrence(flow: Flow, tenant: Tenant, at: datetime, natural: str) -> str:
    """The run's occurrence under the flow's entry limit: `natural` names this occurrence of
    the trigger (an event id, a birthday's year, …)."""
    if flow.entry_limit == EntryLimit.ONCE:
        return "once"
    if flow.entry_limit == EntryLimit.YEARLY:
        return str(at.astimezone(tenant_zone(tenant)).year)
    return natural


def events_process(*, tenant: Tenant, now: datetime, batch: int = BATCH) -> int:
    """Act on the brand's unprocessed events, a batch per transaction; how many were read."""
    done = 0
    while True:
        with transaction.atomic(), tenant_scope(tenant):
            with connection.cursor() as cursor:
                # One worker at a time acts on a brand's events, in order: an exit must
                # see the runs the events before it began. Another worker leaves them.
                cursor.execute(BRAND_EVENTS_LOCK, [tenant.pk])
                if not cursor.fetchone()[0]:
                    return done
                cursor.execute(CLAIM_EVENTS, [tenant.pk, batch])
                events = events_of(cursor.fetchall())
            if not events:
                return done
            flows = list(Flow.objects.filter(status=FlowStatus.LIVE))
            if flows:
                events_act(tenant, flows, events, now)
            with connection.cursor() as cursor:
                cursor.execute(MARK_PROCESSED, [now, tenant.pk, [e.id for e in events]])
            done += len(events)
        if len(events) < batch:
            return done


def events_of(rows) -> list[Event]:
    """Events from rows of (id, kind, member id, payload, created at)."""
    return Event.from_rows(rows)


def events_act(tenant: Tenant, flows: list[Flow], events: list[Event], now: datetime) -> None:
    """Start the runs these events trigger, then end the runs their exit conditions name,
    in these flows (all the brand's live ones, or a dry run's copy). Entries first: an
    exit in the same batch as the trigger (an order right after enrolling) ends the run
    that trigger began. A flow whose entry fails (its segment query, say) is logged and
    skipped; the others go on."""
    candidates: list[tuple[Flow, Event]] = [
        (flow, event) for event in events for flow in flows if _matches(flow, event)
    ]
    if candidates:
        _enter(tenant, candidates, now)
    exiting: dict[str, list[tuple[int, datetime, int]]] = defaultdict(list)
    for event in events:
        if event.member_id is not None:
            exiting[event.trigger].append((event.member_id, event.created_at, event.id))
    for trigger, members_at in exiting.items():
        flow_ids = [f.pk for f in flows if trigger in f.exit_on]
        flow_runs_exit(
            tenant=tenant,
            flow_ids=flow_ids,
            members_at=members_at,
            reason=trigger.replace("_", " "),
            now=now,
        )


def _enter(tenant: Tenant, candidates: list[tuple[Flow, Event]], now: datetime) -> None:
    numbers, members = _people(tenant, [event for _, event in candidates])
    entries: dict[int, list[Entry]] = defaultdict(list)
    for flow, event in candidates:
        subscriber_id = event.payload.get("subscriber_id")
        member_id = event.member_id
        if member_id is None and subscriber_id is not None:
            member_id = members.get(subscriber_id)
        if subscriber_id is None and member_id is not None:
            subscriber_id = numbers.get(member_id)
        if flow.audience == FlowAudience.MEMBERS and member_id is None:
            continue
        if flow.audience == FlowAudience.NON_MEMBERS and member_id is not None:
            continue
        if member_id is None and subscriber_id is None:
            continue
        entries[flow.pk].append(
            Entry(
                flow_id=flow.pk,
                member_id=member_id,
                subscriber_id=subscriber_id,
                occurrence=occurrence(flow, tenant, event.created_at, f"e{event.id}"),
                context={"event": event.id},
                entered_at=event.created_at,
            )
        )
    by_id = {flow.pk: flow for flow, _ in candidates}
    for flow_id, flow_entries in entries.items():
        flow = by_id[flow_id]
        try:
            with transaction.atomic():
                if flow.segment_id is not None:
                    flow_entries = in_segment(tenant, flow.segment, flow_entries, now)
                flow_runs_enter(tenant=tenant, entries=flow_entries, now=now)
        except DatabaseError:
            logger.exception("flow %s: %d entries failed", flow_id, len(flow_entries))


def _people(tenant: Tenant, events: list[Event]) -> tuple[dict, dict]:
    """member id → its number (subscribed first), subscriber id → its member."""
    member_ids = sorted({e.member_id for e in events if e.member_id is not None})
    subscriber_ids = sorted(
        {e.payload["subscriber_id"] for e in events if e.payload.get("subscriber_id")}
    )
    numbers, members = {}, {}
    with connection.cursor() as cursor:
        if member_ids:
            cursor.execute(NUMBERS, [tenant.pk, member_ids])
            numbers = dict(cursor.fetchall())
        if subscriber_ids:
            cursor.execute(MEMBERS_OF_NUMBERS, [tenant.pk, subscriber_ids])
            members = {s: m for s, m in cursor.fetchall() if m is not None}
    return numbers, members
