"""Running flows: people enter (from events and scans), and each due run takes its steps.

Entering is set-based: the callers (automations.services.flow_triggers) hand over rows of
(flow, member, subscriber, person, occurrence) and ONE INSERT … ON CONFLICT DO NOTHING turns
them into runs — the unique (flow, person, occurrence) makes a trigger seen twice enter
nobody twice. A run starts due at once.

Advancing claims due runs of live flows (`FOR UPDATE SKIP LOCKED`, so two workers never take
the same run) and walks each from its step until a wait or the end, in ONE transaction per
batch: the texts a step queues (dedupe key flow:<run>:<step>), the points and reward codes
it gives (keyed the same way), the tags, and the run's new step commit together or not at
all. A worker that dies mid-batch leaves the batch as it was; the next one does it again and
nothing happens twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction

from automations.models import Flow, FlowRun, FlowRunLog, RunStatus
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import (
    ConsentSource,
    MessageKind,
    ShortLink,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.outbound import BodyInvalid, message_create
from messaging.services.subscribers import Evidence, subscriber_opt_out
from programs.models import Member, Order, Reward
from programs.selectors import personalization
from programs.services.members import member_tags_change, points_gift
from programs.services.rewards import RewardUnavailable, reward_gift

logger = logging.getLogger(__name__)

BATCH = 200
# A run takes at most this many steps in one go (a graph has no loops; this is a backstop).
MAX_STEPS_AT_ONCE = 50


# --- entering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    flow_id: int
    member_id: int | None
    subscriber_id: int | None
    occurrence: str
    context: dict = field(default_factory=dict)
    # When the trigger happened (an event's time): exits compare with it. None: `now`.
    entered_at: datetime | None = None

    @property
    def person(self) -> str:
        return f"m{self.member_id}" if self.member_id is not None else f"s{self.subscriber_id}"


# Runs from rows of (tenant_id, flow_id, member_id, subscriber_id, person, occurrence, step,
# entered_at, context) — the callers' {rows} query — once per (flow, person, occurrence),
# each with its "entered" log row; the runs begun per brand.
ENTER_ROWS = """
WITH rows AS ({rows}),
entered AS (
    INSERT INTO automations_flowrun (
        tenant_id, flow_id, member_id, subscriber_id, person, occurrence, status, step,
        next_run_at, entered_at, exit_reason, context, steps_taken)
    SELECT tenant_id, flow_id, member_id, subscriber_id, person, occurrence, 'active', step,
           %(now)s, entered_at, '', context, 0
    FROM rows
    ON CONFLICT (tenant_id, flow_id, person, occurrence) DO NOTHING
    RETURNING id, tenant_id, flow_id, step
),
logged AS (
    INSERT INTO automations_flowrunlog (
        tenant_id, run_id, flow_id, step, action, detail, created_at)
    SELECT tenant_id, id, flow_id, step, 'entered', '', %(now)s FROM entered
    RETURNING tenant_id
)
SELECT tenant_id, count(*) FROM logged GROUP BY tenant_id
"""
ENTRIES = """
SELECT f.tenant_id, e.flow_id, e.member_id, e.subscriber_id, e.person, e.occurrence,
       f.steps ->> 'start' AS step, coalesce(e.at, %(now)s) AS entered_at, e.context
FROM unnest(%(flows)s::bigint[], %(members)s::bigint[], %(subscribers)s::bigint[],
            %(persons)s::varchar[], %(occurrences)s::varchar[], %(contexts)s::jsonb[],
            %(ats)s::timestamptz[])
     AS e(flow_id, member_id, subscriber_id, person, occurrence, context, at)
JOIN automations_flow f ON f.id = e.flow_id AND f.tenant_id = %(tenant)s
"""


def enter_rows(cursor, rows_sql: str, params: dict) -> dict[int, int]:
    """Run ENTER_ROWS over the caller's rows; runs begun per brand."""
    cursor.execute(ENTER_ROWS.format(rows=rows_sql), params)
    return dict(cursor.fetchall())


def flow_runs_enter(*, tenant: Tenant, entries: list[Entry], now: datetime) -> int:
    """Runs for the entries not in their flow already for that occurrence; how many began."""
    if not entries:
        return 0
    with connection.cursor() as cursor:
        begun = enter_rows(
            cursor,
            ENTRIES,
            {
                "tenant": tenant.pk,
                "now": now,
                "flows": [e.flow_id for e in entries],
                "members": [e.member_id for e in entries],
                "subscribers": [e.subscriber_id for e in entries],
                "persons": [e.person for e in entries],
                "occurrences": [e.occurrence for e in entries],
                "contexts": [json.dumps(e.context) for e in entries],
                "ats": [e.entered_at for e in entries],
            },
        )
    return begun.get(tenant.pk, 0)


EXIT = """
WITH exited AS (
    UPDATE automations_flowrun r
    SET status = 'exited', exit_reason = %(reason)s, finished_at = %(now)s, next_run_at = NULL
    FROM unnest(%(members)s::bigint[], %(since)s::timestamptz[], %(events)s::bigint[])
         AS x(member_id, at, event_id)
    WHERE r.tenant_id = %(tenant)s AND r.status = 'active' AND r.member_id = x.member_id
      AND r.flow_id = ANY(%(flows)s)
      -- Runs whose trigger came before the exit event (the same moment: by event order).
      AND (r.entered_at < x.at OR (r.entered_at = x.at
           AND coalesce((r.context ->> 'event')::bigint, 0) < coalesce(x.event_id, 0)))
    RETURNING r.id, r.flow_id, r.step
)
INSERT INTO automations_flowrunlog (tenant_id, run_id, flow_id, step, action, detail, created_at)
SELECT %(tenant)s, id, flow_id, step, 'exited', %(reason)s, %(now)s FROM exited
"""


def flow_runs_exit(
    *,
    tenant: Tenant,
    flow_ids: list[int],
    members_at: list[tuple[int, datetime, int | None]],
    reason: str,
    now: datetime,
) -> int:
    """End the active runs of these flows for members with an exit event (member, when,
    its event id) after what started the run (an order ends a win-back the member is in);
    how many ended."""
    if not flow_ids or not members_at:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            EXIT,
            {
                "tenant": tenant.pk,
                "flows": flow_ids,
                "members": [m for m, _, _ in members_at],
                "since": [at for _, at, _ in members_at],
                "events": [event for _, _, event in members_at],
                "reason": reason,
                "now": now,
            },
        )
        return cursor.rowcount


# --- advancing ------------------------------------------------------------------------------

CLAIM = """
SELECT r.id FROM automations_flowrun r
JOIN automations_flow f ON f.id = r.flow_id AND f.tenant_id = r.tenant_id
WHERE r.tenant_id = %s AND r.status = 'active' AND r.next_run_at <= %s AND f.status = 'live'
  AND (%s::bigint[] IS NULL OR r.flow_id = ANY(%s))
ORDER BY r.next_run_at
LIMIT %s
FOR UPDATE OF r SKIP LOCKED
"""


BRAND_RUNS_LOCK = "SELECT pg_try_advisory_xact_lock(7302, %s::int)"


@dataclass
class Advanced:
    runs: int = 0
    steps: int = 0
    texts: int = 0
    finished: int = 0


@dataclass
class DryState:
    """What a dry run (automations.services.flow_dryrun) must neither write nor lock, kept
    here instead: consent as it stood at the simulated moment (subscriber id → status), and
    the points its steps would have given (member id → points)."""

    statuses: dict[int, str] = field(default_factory=dict)
    points: dict[int, int] = field(default_factory=dict)

    def status(self, subscriber: Subscriber) -> str:
        return self.statuses.get(subscriber.pk, subscriber.status)


# A reward code's shape in a dry run's texts (as long as a real one: "LS-XXXXX-XXXXX").
DRY_CODE = "LS-DRYRN-00000"


def flow_runs_advance(
    *,
    tenant: Tenant,
    now: datetime,
    batch: int = BATCH,
    flow_ids: list[int] | None = None,
    dry: DryState | None = None,
) -> Advanced:
    """Take the due runs of the brand's live flows (or of `flow_ids`), a batch per
    transaction, until none is due; each walks until a wait or its end. With `dry`, steps
    change nothing outside the flow's own rows (see DryState)."""
    report = Advanced()
    while True:
        with transaction.atomic(), tenant_scope(tenant):
            with connection.cursor() as cursor:
                if dry is None:
                    # One worker at a time walks a brand's runs (two would only share the
                    # work, and lock members in different orders); another leaves them.
                    cursor.execute(BRAND_RUNS_LOCK, [tenant.pk])
                    if not cursor.fetchone()[0]:
                        return report
                cursor.execute(CLAIM, [tenant.pk, now, flow_ids, flow_ids, batch])
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return report
            _Walker(tenant, now, report, dry).walk(ids)
        if len(ids) < batch:
            return report


class _Walker:
    """One batch of claimed runs, with what their steps need loaded once."""

    def __init__(self, tenant: Tenant, now: datetime, report: Advanced, dry: DryState | None):
        self.tenant, self.now, self.report, self.dry = tenant, now, report, dry
        self.logs: list[FlowRunLog] = []

    def status(self, subscriber: Subscriber) -> str:
        return self.dry.status(subscriber) if self.dry else subscriber.status

    def walk(self, ids: list[int]) -> None:
        runs = list(FlowRun.objects.filter(pk__in=ids).order_by("next_run_at", "id"))
        flows = Flow.objects.in_bulk({r.flow_id for r in runs})
        members = Member.objects.select_related("tier").in_bulk(
            {r.member_id for r in runs if r.member_id}
        )
        subscribers = Subscriber.objects.in_bulk({r.subscriber_id for r in runs if r.subscriber_id})
        # A member's run without a number of its own texts the member's subscribed number.
        missing = [r.member_id for r in runs if r.subscriber_id is None and r.member_id]
        by_member = {}
        for subscriber in Subscriber.objects.filter(member_id__in=missing).order_by(
            "member_id", "-status", "id"
        ):
            current = by_member.get(subscriber.member_id)
            if current is None or (
                self.status(subscriber) == SubscriberStatus.SUBSCRIBED
                and self.status(current) != SubscriberStatus.SUBSCRIBED
            ):
                by_member[subscriber.member_id] = subscriber
        values = personalization(self.tenant, list(members.values()), self.now)
        for run in runs:
            flow = flows[run.flow_id]
            member = members.get(run.member_id)
            subscriber = subscribers.get(run.subscriber_id) or by_member.get(run.member_id)
            logged = len(self.logs)
            try:
                with transaction.atomic():  # a run that fails stops alone
                    _Run(self, flow, run, member, subscriber, values.get(run.member_id, {})).walk()
            except Exception as error:  # whatever it was, the other runs go on
                logger.exception("flow %s: run %s failed at step %s", flow.pk, run.pk, run.step)
                del self.logs[logged:]
                reason = f"failed: {error}"[:100]
                FlowRun.objects.filter(pk=run.pk).update(
                    status=RunStatus.STOPPED, next_run_at=None, finished_at=self.now,
                    exit_reason=reason,
                )  # fmt: skip
                self.log(run, run.step, "failed", reason)
            self.report.runs += 1
        FlowRunLog.objects.bulk_create(self.logs)

    def log(self, run: FlowRun, step: str, action: str, detail: str = "") -> None:
        self.logs.append(
            FlowRunLog(
                tenant=self.tenant,
                run=run,
                flow_id=run.flow_id,
                step=step,
                action=action,
                detail=detail[:200],
                created_at=self.now,
            )
        )


class _Run:
    def __init__(self, walker: _Walker, flow: Flow, run: FlowRun, member, subscriber, values):
        self.walker, self.flow, self.run = walker, flow, run
        self.member: Member | None = member
        self.subscriber: Subscriber | None = subscriber
        self.values = values
        self.now = walker.now
        self.changed = False  # the member changed since `values` were read (points, tags)

    def walk(self) -> None:
        run, steps = self.run, self.flow.steps["steps"]
        for _ in range(MAX_STEPS_AT_ONCE):
            step = steps.get(run.step)
            if step is None:  # the flow was edited and this step is gone
                self._finish(RunStatus.DONE, "ended", f"step {run.step} no longer exists")
                return
            self.walker.report.steps += 1
            run.steps_taken += 1
            outcome = getattr(self, f"_{step['type']}")(run.step, step)
            if outcome is WAIT:
                break
            if outcome is END or outcome is None:  # an end step, or a step leading nowhere
                self._finish(RunStatus.DONE, "ended", "")
                return
            run.step = outcome
        run.save(update_fields=["step", "next_run_at", "context", "steps_taken"])

    def _finish(self, status: str, action: str, detail: str) -> None:
        run = self.run
        run.status = status
        run.next_run_at = None
        run.finished_at = self.now
        run.exit_reason = detail
        self.walker.log(run, run.step, action, detail)
        self.walker.report.finished += 1
        run.save(
            update_fields=[
                "status", "next_run_at", "finished_at", "exit_reason", "context", "steps_taken",
            ]
        )  # fmt: skip

    def _key(self, step_id: str) -> str:
        return f"flow:{self.run.pk}:{step_id}"

    # --- steps: each returns the next step's id, WAIT (it stays) or END -------------------

    def _send_sms(self, step_id: str, step: dict):
        subscriber = self.subscriber
        if subscriber is None or self.walker.status(subscriber) != SubscriberStatus.SUBSCRIBED:
            self.walker.log(self.run, step_id, "not_texted", "no subscribed number")
            return step.get("next")
        if self.changed and self.member is not None:
            self._fresh()
            self.values = personalization(self.walker.tenant, [self.member], self.now)[
                self.member.pk
            ]
            self.changed = False
        values = dict(self.values)
        dry = self.walker.dry
        if dry and self.member is not None and dry.points.get(self.member.pk):
            balance = self.member.points_balance + dry.points[self.member.pk]
            values["points_balance"] = f"{balance:,}"
        if self.run.context.get("reward_code"):
            values["reward_code"] = self.run.context["reward_code"]
        try:
            message, created = message_create(
                tenant=self.walker.tenant,
                subscriber=subscriber,
                template=step["body"],
                kind=MessageKind.MARKETING,
                source="flow",
                source_ref=str(self.flow.pk),
                dedupe_key=self._key(step_id),
                values=values,
                now=self.now,
            )
        except BodyInvalid as error:  # too long after personalization
            self.walker.log(self.run, step_id, "not_texted", str(error))
            return step.get("next")
        self.run.context["last_message"] = message.dedupe_key
        if created:
            self.walker.report.texts += 1
        self.walker.log(self.run, step_id, "sent", message.dedupe_key)
        return step.get("next")

    def _wait(self, step_id: str, step: dict):
        due = self.now + timedelta(
            days=step.get("days", 0), hours=step.get("hours", 0), minutes=step.get("minutes", 0)
        )
        if step.get("until"):
            due = next_local_time(due, step["until"], self._zone())
        self.run.next_run_at = due
        self.walker.log(self.run, step_id, "waited", f"until {due.isoformat()}")
        self.run.step = step.get("next") or ""
        if not self.run.step:
            return END
        return WAIT

    def _branch(self, step_id: str, step: dict):
        yes = self._condition(step["if"])
        self.walker.log(self.run, step_id, "branched", "yes" if yes else "no")
        return step.get("yes") if yes else step.get("no")

    def _award_points(self, step_id: str, step: dict):
        if self.member is None:
            self.walker.log(self.run, step_id, "skipped", "not a member")
            return step.get("next")
        dry = self.walker.dry
        if dry is not None:
            dry.points[self.member.pk] = dry.points.get(self.member.pk, 0) + step["points"]
            self.walker.log(self.run, step_id, "awarded", f"{step['points']} points")
            return step.get("next")
        entry = points_gift(
            member=self.member,
            points=step["points"],
            reason=f"From “{self.flow.name}”",
            key=self._key(step_id),
            now=self.now,
        )
        self.changed = True
        self.walker.log(self.run, step_id, "awarded", f"{step['points']} points" if entry else "")
        return step.get("next")

    def _issue_reward(self, step_id: str, step: dict):
        if self.member is None:
            self.walker.log(self.run, step_id, "skipped", "not a member")
            return step.get("next")
        reward = Reward.objects.filter(pk=step["reward_id"]).first()
        try:
            if reward is None:
                raise RewardUnavailable("the reward was deleted")
            if self.walker.dry is not None:
                if not reward.active:
                    raise RewardUnavailable(f"The reward {reward.name!r} is not offered any more.")
                code = DRY_CODE
            else:
                code = reward_gift(
                    member=self.member, reward=reward, key=self._key(step_id), now=self.now
                ).code
        except RewardUnavailable as error:
            self.walker.log(self.run, step_id, "skipped", str(error))
            return step.get("next")
        self.run.context["reward_code"] = code
        self.walker.log(self.run, step_id, "rewarded", code)
        return step.get("next")

    def _add_tag(self, step_id: str, step: dict):
        return self._tag(step_id, step, add=True)

    def _remove_tag(self, step_id: str, step: dict):
        return self._tag(step_id, step, add=False)

    def _tag(self, step_id: str, step: dict, *, add: bool):
        if self.member is None:
            self.walker.log(self.run, step_id, "skipped", "not a member")
            return step.get("next")
        if self.walker.dry is None:
            self.changed = True
            member_tags_change(
                member=self.member,
                add=[step["tag"]] if add else [],
                remove=[] if add else [step["tag"]],
                now=self.now,
            )
        self.walker.log(self.run, step_id, "tagged" if add else "untagged", step["tag"])
        return step.get("next")

    def _unsubscribe(self, step_id: str, step: dict):
        subscriber = self.subscriber
        if subscriber is None or self.walker.status(subscriber) == SubscriberStatus.UNSUBSCRIBED:
            self.walker.log(self.run, step_id, "skipped", "not subscribed")
            return step.get("next")
        if self.walker.dry is not None:
            self.walker.dry.statuses[subscriber.pk] = SubscriberStatus.UNSUBSCRIBED
            self.walker.log(self.run, step_id, "unsubscribed", "sunset")
            return step.get("next")
        subscriber_opt_out(
            subscriber=subscriber,
            evidence=Evidence(source=ConsentSource.SUNSET, actor=f"flow: {self.flow.name}"),
            now=self.now,
            confirm=False,
        )
        self.walker.log(self.run, step_id, "unsubscribed", "sunset")
        return step.get("next")

    def _end(self, step_id: str, step: dict):
        return END

    # --- conditions ---------------------------------------------------------------------

    def _condition(self, condition: dict) -> bool:
        kind = condition["type"]
        member, subscriber = self.member, self.subscriber
        if kind == "clicked_last":
            key = self.run.context.get("last_message")
            return (
                bool(key)
                and ShortLink.objects.filter(
                    message_dedupe_key=key, first_clicked_at__isnull=False
                ).exists()
            )
        if kind == "subscribed":
            return (
                subscriber is not None
                and self.walker.status(subscriber) == SubscriberStatus.SUBSCRIBED
            )
        if member is None:
            return False
        member = self._fresh()
        if kind == "ordered_since_entry":
            # Orders placed since entering and by now (a dry run's "now" is in the past).
            return Order.objects.filter(
                member_id=member.pk, placed_at__gte=self.run.entered_at, placed_at__lte=self.now
            ).exists()
        if kind == "tier_is":
            return member.tier_id == condition.get("tier_id")
        if kind == "balance_gte":
            given = self.walker.dry.points.get(member.pk, 0) if self.walker.dry else 0
            return member.points_balance + given >= condition.get("points", 0)
        raise ValueError(f"unknown condition {kind}")

    def _fresh(self) -> Member:
        """The member as it is now (read, not locked: a branch must never keep a real order
        waiting; the steps that change a member lock it themselves)."""
        self.member = Member.objects.select_related("tier").get(pk=self.member.pk)
        return self.member

    def _zone(self) -> ZoneInfo:
        zone = (
            (self.member.timezone if self.member else "")
            or (self.subscriber.timezone if self.subscriber else "")
            or self.walker.tenant.timezone
        )
        return ZoneInfo(zone)


WAIT = object()
END = object()


def next_local_time(after: datetime, at: str, zone: ZoneInfo) -> datetime:
    """The first moment at or after `after` when the clock in `zone` shows `at` (HH:MM)."""
    hour, minute = (int(x) for x in at.split(":"))
    local = after.astimezone(zone)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate < local:
        candidate = (local + timedelta(days=1)).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
    return candidate
