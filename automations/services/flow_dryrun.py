"""A flow's dry run: what it would have done over the last N days of the brand's real history,
with nothing sent and nothing kept.

The run is the real machinery on a simulated clock, inside ONE transaction that is rolled
back at the end: a live copy of the flow; the window's outbox events, in order, acted on for
the copy alone; the date scans at each zone's local trigger time; the copy's runs' steps
when they come due; and the dispatcher's own gate (consent, quiet hours, caps — counting the
texts the brand really sent then) at each text's moment: a text the gate lets go counts as
sent then. Consent is replayed from the consent records, as it stood at each moment. What
the copy's runs did is then read back (their log and their texts) and the transaction
undone; no carrier is called.

It writes only rows of its own (the copy, its runs, their log, texts and links) and locks
nothing real: steps that would change a member or a number (points, reward codes, tags, a
sunset unsubscribe) are kept in memory instead (flow_engine.DryState), and the gate reads
numbers without locking them — a real STOP or order never waits for a dry run.

What it can't know: clicks (nobody clicked texts that were never sent: a "clicked" branch
takes its "no" way) and members as they were (branches on balance or tier read members as
they are now, plus the points the run itself gave).
"""

from __future__ import annotations

import bisect
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from automations.flows.spec import DATE_TRIGGERS, FlowInvalid
from automations.models import (
    DryRunStatus,
    Flow,
    FlowDryRun,
    FlowRun,
    FlowRunLog,
    FlowStatus,
    RunStatus,
)
from automations.services.flow_engine import DryState, flow_runs_advance
from automations.services.flow_scans import flow_scans_run
from automations.services.flow_triggers import events_act, events_of
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentAction, MessageStatus, OutboundMessage, SubscriberStatus
from messaging.services.dispatch import DispatchReport, gate_dry
from messaging.services.setup import messaging_settings_get, sender_default
from programs.services.program import program_get

MAX_DAYS = 90
# Events a trigger is written as in the outbox.
EVENT_KINDS = {"tier_upgraded": "tier_changed", "tier_downgraded": "tier_changed"}

NEXT_EVENT = """
SELECT min(created_at) FROM programs_loyaltyevent
WHERE tenant_id = %s AND created_at > %s AND created_at <= %s AND kind = ANY(%s)
"""
EVENTS = """
SELECT id, kind, member_id, payload, created_at FROM programs_loyaltyevent
WHERE tenant_id = %s AND created_at > %s AND created_at <= %s AND kind = ANY(%s)
ORDER BY created_at, id
"""
# The consent records of the window, and for the numbers they are about, the last record
# before it (None: the number didn't exist yet).
CONSENT = """
SELECT created_at, subscriber_id, action FROM messaging_consentrecord
WHERE tenant_id = %s AND created_at >= %s AND created_at <= %s
ORDER BY created_at, id
"""
CONSENT_BEFORE = """
SELECT DISTINCT ON (subscriber_id) subscriber_id, action FROM messaging_consentrecord
WHERE tenant_id = %s AND subscriber_id = ANY(%s) AND created_at < %s
ORDER BY subscriber_id, created_at DESC, id DESC
"""
STATUS_AFTER = {
    ConsentAction.OPT_IN: SubscriberStatus.SUBSCRIBED,
    ConsentAction.OPT_IN_CONFIRMED: SubscriberStatus.SUBSCRIBED,
    ConsentAction.IMPORTED: SubscriberStatus.SUBSCRIBED,
    ConsentAction.OPT_IN_REQUESTED: SubscriberStatus.PENDING,
    ConsentAction.OPT_OUT: SubscriberStatus.UNSUBSCRIBED,
}
NEXT_RUN = """
SELECT min(next_run_at) FROM automations_flowrun
WHERE tenant_id = %s AND flow_id = %s AND status = 'active' AND next_run_at > %s
"""
ZONES = """
SELECT DISTINCT coalesce(nullif(timezone, ''), %s) FROM programs_member WHERE tenant_id = %s
"""


@dataclass
class StepFigures:
    """What one step did in the window."""

    entered: int = 0  # runs that began here (the first step)
    actions: Counter = field(default_factory=Counter)  # its log: sent, waited, branched, …
    branches: Counter = field(default_factory=Counter)  # yes / no
    texts: int = 0  # texts it created
    sent: int = 0  # … that the gate let go within the window
    held_quiet: int = 0  # … held at least once by quiet hours
    held_cap: int = 0  # … held at least once by the frequency cap
    suppressed: int = 0  # … refused (unsubscribed meanwhile)
    expired: int = 0
    waiting: int = 0  # … still held when the window ended
    segments: int = 0
    cost: Decimal = Decimal(0)


@dataclass
class DryRunReport:
    days: int
    start: datetime
    end: datetime
    entered: int = 0
    finished: int = 0
    exited: int = 0
    in_progress: int = 0
    steps: dict[str, StepFigures] = field(default_factory=dict)

    def total(self, name: str):
        """A step figure summed over the steps (texts, sent, held_quiet, cost, …)."""
        return sum(getattr(figures, name) for figures in self.steps.values())


class _Undo(Exception):
    def __init__(self, report: DryRunReport) -> None:
        self.report = report


def flow_dry_run(
    *,
    flow: Flow,
    days: int,
    now: datetime,
    progress: Callable[[float], None] | None = None,
) -> DryRunReport:
    """What `flow` would have done from `now - days` to `now` (module docstring)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"a dry run covers 1 to {MAX_DAYS} days")
    start = now - timedelta(days=days)
    tenant = flow.tenant
    # Rows made on first use (and cached a few seconds per process) are made outside the
    # undone transaction: made inside, they would vanish while still cached, and a real
    # request making them meanwhile would wait for the whole dry run.
    sender_default(tenant)
    messaging_settings_get(tenant)
    program_get(tenant)
    try:
        with transaction.atomic(), tenant_scope(tenant):
            copy = _live_copy(flow, start)
            simulation = _Simulation(copy, start, now, progress)
            simulation.run()
            raise _Undo(simulation.report(days))
    except _Undo as undone:
        return undone.report


def _live_copy(flow: Flow, start: datetime) -> Flow:
    """The flow as a live flow of its own: its runs collide with no real run (undone with the
    transaction)."""
    return Flow.objects.create(
        name=flow.name,
        template=flow.template,
        status=FlowStatus.LIVE,
        trigger=flow.trigger,
        trigger_type=flow.trigger_type,
        entry_limit=flow.entry_limit,
        audience=flow.audience,
        segment_id=flow.segment_id,
        steps=flow.steps,
        exit_on=flow.exit_on,
        created_at=start,
        updated_at=start,
        published_at=start,
    )


class _Simulation:
    def __init__(self, flow: Flow, start: datetime, end: datetime, progress) -> None:
        self.flow, self.start, self.end, self.progress = flow, start, end, progress
        self.tenant = flow.tenant
        self.kinds = sorted(
            {EVENT_KINDS.get(flow.trigger_type, flow.trigger_type)}
            | {EVENT_KINDS.get(kind, kind) for kind in flow.exit_on}
        )
        self.scan_times = self._scan_times() if flow.trigger_type in DATE_TRIGGERS else []
        self.scan_set = set(self.scan_times)
        # Texts created and not yet settled: id → send_after.
        self.pending: dict[int, datetime] = {}
        self.step_of: dict[int, str] = {}
        self.held: dict[int, set[str]] = defaultdict(set)
        self.outcome: dict[int, str] = {}
        self.seen_logs = 0
        self.events_until = start - timedelta(microseconds=1)
        self.dry = DryState()
        self._consent_load()

    def _consent_load(self) -> None:
        """Consent as it stood at the start, for the numbers whose consent changed in the
        window; the changes, to replay as the clock passes them."""
        with connection.cursor() as cursor:
            cursor.execute(CONSENT, [self.tenant.pk, self.start, self.end])
            self.consent = cursor.fetchall()
            numbers = sorted({subscriber_id for _, subscriber_id, _ in self.consent})
            cursor.execute(CONSENT_BEFORE, [self.tenant.pk, numbers, self.start])
            before = dict(cursor.fetchall())
        for subscriber_id in numbers:
            action = before.get(subscriber_id)
            self.dry.statuses[subscriber_id] = STATUS_AFTER.get(action, SubscriberStatus.NONE)
        self.consent_at = 0

    def _consent_until(self, moment: datetime) -> None:
        while self.consent_at < len(self.consent) and self.consent[self.consent_at][0] <= moment:
            _, subscriber_id, action = self.consent[self.consent_at]
            self.dry.statuses[subscriber_id] = STATUS_AFTER.get(action, SubscriberStatus.NONE)
            self.consent_at += 1

    def _scan_times(self) -> list[datetime]:
        """Each zone's local trigger time on each day of the window (as the scans would
        find people at it)."""
        at = time.fromisoformat(self.flow.trigger.get("at", "10:00"))
        with connection.cursor() as cursor:
            cursor.execute(ZONES, [self.tenant.timezone, self.tenant.pk])
            zones = [ZoneInfo(row[0]) for row in cursor.fetchall()]
        times = set()
        day = self.start.date() - timedelta(days=1)
        while day <= self.end.date() + timedelta(days=1):
            for zone in zones:
                moment = datetime.combine(day, at, tzinfo=zone)
                if self.start <= moment <= self.end:
                    times.add(moment)
            day += timedelta(days=1)
        return sorted(times)

    def run(self) -> None:
        moment = self.start
        while moment is not None:
            self._consent_until(moment)
            with connection.cursor() as cursor:
                cursor.execute(EVENTS, [self.tenant.pk, self.events_until, moment, self.kinds])
                events = events_of(cursor.fetchall())
            self.events_until = moment
            if events:
                events_act(self.tenant, [self.flow], events, moment)
            if moment in self.scan_set:
                flow_scans_run(now=moment, tenant=self.tenant, flow_ids=[self.flow.pk])
            flow_runs_advance(tenant=self.tenant, now=moment, flow_ids=[self.flow.pk], dry=self.dry)
            self._collect_texts()
            self._dispatch(moment)
            if self.progress is not None:
                span = (self.end - self.start).total_seconds()
                self.progress(min(1.0, (moment - self.start).total_seconds() / span))
            moment = self._next(moment)

    def _next(self, after: datetime) -> datetime | None:
        candidates = []
        with connection.cursor() as cursor:
            cursor.execute(NEXT_EVENT, [self.tenant.pk, after, self.end, self.kinds])
            candidates.append(cursor.fetchone()[0])
            cursor.execute(NEXT_RUN, [self.tenant.pk, self.flow.pk, after])
            candidates.append(cursor.fetchone()[0])
        candidates.append(min((t for t in self.pending.values() if t > after), default=None))
        i = bisect.bisect_right(self.scan_times, after)
        candidates.append(self.scan_times[i] if i < len(self.scan_times) else None)
        found = [t for t in candidates if t is not None and t <= self.end]
        return min(found) if found else None

    def _collect_texts(self) -> None:
        """The texts the steps just created (their runs' log says which)."""
        logs = list(
            FlowRunLog.objects.filter(flow=self.flow, action="sent", id__gt=self.seen_logs)
            .order_by("id")
            .values_list("id", "step", "detail")
        )
        if logs:
            self.seen_logs = logs[-1][0]
        keys = {detail: step for _, step, detail in logs}
        for message_id, key, send_after in OutboundMessage.objects.filter(
            dedupe_key__in=list(keys)
        ).values_list("id", "dedupe_key", "send_after"):
            if message_id not in self.step_of:
                self.step_of[message_id] = keys[key]
                self.pending[message_id] = send_after

    def _dispatch(self, moment: datetime) -> None:
        """The gate at `moment` for the texts due; those it lets go are sent then."""
        due = [mid for mid, at in self.pending.items() if at <= moment]
        if not due:
            return
        messages = list(
            OutboundMessage.objects.select_related("tenant").filter(pk__in=due).order_by("id")
        )
        to_send = gate_dry(messages, moment, DispatchReport(), statuses=self.dry.statuses)
        going = {m.pk for m in to_send}
        if going:
            OutboundMessage.objects.filter(pk__in=going).update(
                status=MessageStatus.SENT, sent_at=moment, updated_at=moment
            )
        for message in messages:
            if message.pk in going:
                self.outcome[message.pk] = "sent"
                del self.pending[message.pk]
            elif message.status == MessageStatus.DEFERRED:
                reason = "quiet" if message.status_reason.startswith("quiet") else "cap"
                self.held[message.pk].add(reason)
                self.pending[message.pk] = message.send_after
            else:
                self.outcome[message.pk] = message.status  # suppressed, expired
                del self.pending[message.pk]

    def report(self, days: int) -> DryRunReport:
        report = DryRunReport(days=days, start=self.start, end=self.end)
        order = list(self.flow.steps["steps"])
        report.steps = {sid: StepFigures() for sid in order}
        for step, action, detail in FlowRunLog.objects.filter(flow=self.flow).values_list(
            "step", "action", "detail"
        ):
            figures = report.steps.setdefault(step, StepFigures())
            if action == "entered":
                figures.entered += 1
                report.entered += 1
            else:
                figures.actions[action] += 1
            if action == "branched":
                figures.branches[detail] += 1
        price = messaging_settings_get(self.tenant).price_per_segment
        segments = dict(
            OutboundMessage.objects.filter(pk__in=list(self.step_of)).values_list("id", "segments")
        )
        for message_id, step in self.step_of.items():
            figures = report.steps[step]
            figures.texts += 1
            figures.segments += segments[message_id]
            figures.cost += price * segments[message_id]
            outcome = self.outcome.get(message_id)
            if outcome == "sent":
                figures.sent += 1
            elif outcome == MessageStatus.SUPPRESSED:
                figures.suppressed += 1
            elif outcome == MessageStatus.EXPIRED:
                figures.expired += 1
            else:
                figures.waiting += 1
            figures.held_quiet += "quiet" in self.held[message_id]
            figures.held_cap += "cap" in self.held[message_id]
        runs = Counter(FlowRun.objects.filter(flow=self.flow).values_list("status", flat=True))
        report.finished = runs[RunStatus.DONE]
        report.exited = runs[RunStatus.EXITED]
        report.in_progress = runs[RunStatus.ACTIVE]
        return report


# --- as a job: asked for in the dashboard, done by a worker ---------------------------------

PROGRESS_KEY = "flow-dry-run-progress:{}"
TOTALS = (
    "texts", "sent", "held_quiet", "held_cap", "suppressed", "expired", "waiting", "segments",
    "cost",
)  # fmt: skip


def report_json(report: DryRunReport) -> dict:
    """The report as the job keeps it (JSON)."""
    return {
        "days": report.days,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "entered": report.entered,
        "finished": report.finished,
        "exited": report.exited,
        "in_progress": report.in_progress,
        "totals": {
            name: str(report.total(name)) if name == "cost" else report.total(name)
            for name in TOTALS
        },
        "steps": {
            step: {
                "entered": f.entered,
                "actions": dict(f.actions),
                "branches": dict(f.branches),
                "texts": f.texts,
                "sent": f.sent,
                "held_quiet": f.held_quiet,
                "held_cap": f.held_cap,
                "suppressed": f.suppressed,
                "expired": f.expired,
                "waiting": f.waiting,
                "segments": f.segments,
                "cost": str(f.cost),
            }
            for step, f in report.steps.items()
        },
    }


@transaction.atomic
def flow_dry_run_queue(*, flow: Flow, days: int, now: datetime, actor=None) -> FlowDryRun:
    """A dry run for a worker to do (automations.tasks.flow_dry_run)."""
    from automations.tasks import flow_dry_run as task
    from loyaltysms.tenancy.tasks import enqueue_on_commit

    if not 1 <= days <= MAX_DAYS:
        raise FlowInvalid(f"A dry run covers 1 to {MAX_DAYS} days.", errors={"days": ["1–90"]})
    with tenant_scope(flow.tenant):
        job = FlowDryRun.objects.create(
            flow=flow, days=days, flow_version=flow.version, created_by=actor, created_at=now
        )
    enqueue_on_commit(task, flow.tenant_id, job.pk)
    return job


def flow_dry_run_execute(*, job: FlowDryRun, now: datetime) -> FlowDryRun:
    """Do a queued dry run once (a redelivered task finds it taken and returns)."""
    tenant = job.tenant
    with tenant_scope(tenant):
        taken = FlowDryRun.objects.filter(pk=job.pk, status=DryRunStatus.QUEUED).update(
            status=DryRunStatus.RUNNING, started_at=now
        )
        if taken != 1:
            return FlowDryRun.objects.get(pk=job.pk)  # another worker got there first
        job.refresh_from_db()
        key = PROGRESS_KEY.format(job.pk)
        try:
            report = flow_dry_run(
                flow=job.flow, days=job.days, now=now, progress=_ProgressNote(key)
            )
        except Exception as error:
            FlowDryRun.objects.filter(pk=job.pk).update(
                status=DryRunStatus.FAILED, error=str(error)[:300], finished_at=timezone.now()
            )
            raise
        FlowDryRun.objects.filter(pk=job.pk).update(
            status=DryRunStatus.DONE,
            progress=1.0,
            report=report_json(report),
            finished_at=timezone.now(),
        )
        with contextlib.suppress(RedisError):  # expires on its own within the hour
            cache.delete(key)
        return FlowDryRun.objects.get(pk=job.pk)


class _ProgressNote:
    """The run's progress, for its page. The run's own writes are undone at its end, so it
    goes to the cache, as a nicety: a cache that can't be reached is given up on for the rest
    of the run (each try could wait its timeout), and the run goes on without it."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.reachable = True

    def __call__(self, done: float) -> None:
        if not self.reachable:
            return
        try:
            cache.set(self.key, done, 3600)
        except RedisError:
            self.reachable = False


def dry_run_progress(job: FlowDryRun) -> float | None:
    """How far the run is, 0 to 1; None while it runs and the cache can't say."""
    if job.status == DryRunStatus.RUNNING:
        try:
            return cache.get(PROGRESS_KEY.format(job.pk), 0.0)
        except RedisError:
            return None
    return 1.0 if job.status == DryRunStatus.DONE else 0.0
