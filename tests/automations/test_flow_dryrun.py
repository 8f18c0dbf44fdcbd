"""A dry run over seeded history reports what a real run over the same history sends.

Two brands live the same ten days (people enrol at all hours, some never subscribe, one
STOPs while her text waits for the morning, one orders and leaves the flow, a reminder two
hours after an offer meets the frequency cap). In one, the flow is live throughout and the
real engine and dispatcher run at every moment something is due; in the other, the flow is
a draft, dry-run afterwards over the same ten days. Their figures must be equal — and the dry
run must leave no trace."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from automations.flows.lint import flow_lint
from automations.models import Flow, FlowRun, FlowRunLog
from automations.services.flow_dryrun import flow_dry_run
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageStatus, OutboundMessage, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.setup import messaging_settings_get, sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_out
from programs.models import LoyaltyEvent, Member, PointsEntry
from programs.services.members import Birthday
from programs.services.orders import order_record

from ..conftest import make_brand
from .conftest import NEW_YORK, in_new_york, join

# 08:00 in New York on 1 June.
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
END = T0 + timedelta(days=10)
STEPS = {
    "start": "welcome",
    "steps": {
        "welcome": {"type": "send_sms", "body": "Welcome {first_name}!", "next": "w1"},
        "w1": {"type": "wait", "days": 1, "next": "offer"},
        "offer": {"type": "send_sms", "body": "10% off today", "next": "w2"},
        "w2": {"type": "wait", "hours": 2, "next": "remind"},
        "remind": {"type": "send_sms", "body": "Last hours for 10% off", "next": "points"},
        "points": {"type": "award_points", "points": 5, "next": None},
    },
}


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    """`day` days after 1 June, at a New York wall time (EDT, UTC-4)."""
    return T0 + timedelta(days=day, hours=hour - 8, minutes=minute)


# (when, what, person)
HISTORY = [
    (ny(0, 14), "join", 1),
    (ny(0, 22, 30), "join", 2),  # at night: the welcome waits for 08:00
    (ny(1, 9), "join_unsubscribed", 3),  # no number subscribed: never texted
    (ny(1, 23), "join", 4),
    (ny(2, 5), "stop", 4),  # STOPs before her welcome leaves at 08:00
    (ny(3, 12), "join", 5),
    (ny(3, 20), "order", 5),  # orders: leaves the flow before the offer
    (ny(6, 15), "join", 6),
    (ny(9, 20, 30), "join", 7),  # its offer comes after the window ends
]


def brand_with_history(slug: str, *, live: bool):
    tenant = in_new_york(make_brand(slug, slug.title(), f"owner@{slug}.test").tenant)
    flow = flow_create(
        tenant=tenant,
        now=T0 - timedelta(days=1),
        name="Welcome",
        trigger={"type": "member_enrolled"},
        steps=STEPS,
        exit_on=["order_placed"],
    )
    if live:
        flow = flow_set_status(flow=flow, status="live", now=T0 - timedelta(days=1))
    return tenant, flow


def act(tenant, what: str, n: int, at: datetime) -> None:
    if what.startswith("join"):
        join(tenant, n, at, subscribe=what == "join")
    elif what == "stop":
        with tenant_scope(tenant):
            subscriber = Subscriber.objects.get(phone=f"+1212555{n:04d}")
        subscriber_opt_out(
            subscriber=subscriber, evidence=Evidence(source="keyword"), now=at, confirm=False
        )
    elif what == "order":
        order_record(
            tenant=tenant,
            order_id=f"o{n}",
            member_external_id=f"m{n}",
            subtotal=Decimal(30),
            currency="USD",
            now=at,
            placed_at=at,
        )


def live_through_history(tenant, flow: Flow) -> dict:
    """The real engine and dispatcher at every moment something happens or comes due; what
    each step's texts did."""
    held: dict[int, set[str]] = defaultdict(set)
    history = list(HISTORY)
    moment = T0
    sender_ids = {sender_default(tenant).pk}
    while moment is not None and moment <= END:
        while history and history[0][0] <= moment:
            at, what, n = history.pop(0)
            act(tenant, what, n, at)
        flows_work_once(tenant=tenant, now=lambda m=moment: m)
        dispatch_due(now=lambda m=moment: m, sender_ids=sender_ids)
        with tenant_scope(tenant):
            for pk, reason in OutboundMessage.objects.filter(
                source="flow", status=MessageStatus.DEFERRED
            ).values_list("pk", "status_reason"):
                held[pk].add("quiet" if reason.startswith("quiet") else "cap")
            candidates = [
                history[0][0] if history else None,
                FlowRun.objects.filter(flow=flow, status="active", next_run_at__gt=moment)
                .order_by("next_run_at")
                .values_list("next_run_at", flat=True)
                .first(),
                OutboundMessage.objects.filter(
                    source="flow", status__in=["queued", "deferred"], send_after__gt=moment
                )
                .order_by("send_after")
                .values_list("send_after", flat=True)
                .first(),
            ]
        moment = min((c for c in candidates if c is not None), default=None)
    figures: dict[str, Counter] = defaultdict(Counter)
    with tenant_scope(tenant):
        for step, action in FlowRunLog.objects.filter(flow=flow).values_list("step", "action"):
            figures[step][action] += 1
        for message in OutboundMessage.objects.filter(source="flow", source_ref=str(flow.pk)):
            step = message.dedupe_key.rsplit(":", 1)[1]
            figures[step]["texts"] += 1
            figures[step]["segments"] += message.segments
            sent = message.sent_at is not None and message.sent_at <= END
            figures[step]["sent_texts"] += sent
            figures[step]["suppressed"] += message.status == MessageStatus.SUPPRESSED
            figures[step]["held_quiet"] += "quiet" in held[message.pk]
            figures[step]["held_cap"] += "cap" in held[message.pk]
        runs = Counter(FlowRun.objects.filter(flow=flow).values_list("status", flat=True))
    return {"steps": figures, "runs": runs}


def test_a_dry_run_reports_what_a_real_run_over_the_same_history_sent(db):
    real_tenant, real_flow = brand_with_history("real-cafe", live=True)
    real = live_through_history(real_tenant, real_flow)
    dry_tenant, draft = brand_with_history("dry-cafe", live=False)
    for at, what, n in HISTORY:  # the same history, acted on with no flow live
        act(dry_tenant, what, n, at)
        flows_work_once(tenant=dry_tenant, now=lambda at=at: at)
    before = _trace(dry_tenant)

    report = flow_dry_run(flow=draft, days=10, now=END)

    assert _trace(dry_tenant) == before  # nothing kept
    # The scenario does what it says (so the comparison means something):
    steps = real["steps"]
    assert steps["welcome"]["entered"] == 7
    assert steps["welcome"]["not_texted"] == 1  # no subscribed number
    assert steps["welcome"]["held_quiet"] >= 2 and steps["welcome"]["suppressed"] == 1
    assert steps["remind"]["held_cap"] >= 1
    assert real["runs"]["exited"] == 1
    for step in STEPS["steps"]:
        got = report.steps[step]
        want = steps[step]
        assert got.entered == want["entered"], step
        assert got.actions["sent"] == want["sent"], step
        assert got.actions["not_texted"] == want["not_texted"], step
        assert got.actions["waited"] == want["waited"], step
        assert got.actions["awarded"] == want["awarded"], step
        assert got.texts == want["texts"], step
        assert got.sent == want["sent_texts"], step
        assert got.suppressed == want["suppressed"], step
        assert got.held_quiet == want["held_quiet"], step
        assert got.held_cap == want["held_cap"], step
        assert got.segments == want["segments"], step
    assert report.exited == real["runs"]["exited"]
    assert report.finished == real["runs"]["done"]
    assert report.in_progress == real["runs"]["active"]
    price = messaging_settings_get(dry_tenant).price_per_segment
    assert report.total("cost") == price * sum(s["segments"] for s in steps.values())


def _trace(tenant) -> dict:
    with tenant_scope(tenant):
        return {
            "flows": list(Flow.objects.values_list("id", "status")),
            "runs": FlowRun.objects.count(),
            "texts": OutboundMessage.objects.count(),
            "points": PointsEntry.objects.count(),
            "balances": sorted(Member.objects.values_list("points_balance", flat=True)),
            "subscribers": sorted(Subscriber.objects.values_list("status", flat=True)),
            "unprocessed": LoyaltyEvent.objects.filter(processed_at__isnull=True).count(),
        }


def test_lint_warns_about_night_sends_bursts_and_missing_opt_out(alice_brand):
    tenant = alice_brand.tenant
    flow = flow_create(
        tenant=tenant,
        now=T0,
        name="Noisy",
        trigger={"type": "birthday", "at": "23:00"},
        steps={
            "start": "a",
            "steps": {
                "a": {"type": "send_sms", "body": "One", "next": "b"},
                "b": {"type": "wait", "hours": 1, "next": "c"},
                "c": {"type": "send_sms", "body": "Two", "next": "d"},
                "d": {"type": "wait", "hours": 1, "until": "06:30", "next": "e"},
                "e": {"type": "send_sms", "body": "Three. Reply STOP to opt out", "next": "f"},
                "f": {"type": "send_sms", "body": "Four", "next": None},
            },
        },
    )
    settings = messaging_settings_get(tenant)
    codes = {(w.where, w.code) for w in flow_lint(flow, settings)}
    assert codes == {("trigger", "night-send"), ("steps.d", "night-send"), ("flow", "too-many")}
    settings.opt_out_footer = False
    codes = {(w.where, w.code) for w in flow_lint(flow, settings)}
    assert {("steps.a", "no-opt-out"), ("steps.c", "no-opt-out"), ("steps.f", "no-opt-out")} < codes
    assert ("steps.e", "no-opt-out") not in codes


def test_a_dry_run_of_a_date_flow_finds_the_days_in_its_window(alice_brand):
    """Birthdays 2 and 5 days ago are found at 10:00 on their day (one a Los Angeles member,
    three hours later); one in 3 days and one a month ago are not."""
    tenant = in_new_york(alice_brand.tenant)
    now = ny(20, 15)
    for n, days_ago, zone in ((1, 2, ""), (2, 5, "America/Los_Angeles"), (3, -3, ""), (4, 30, "")):
        day = (now - timedelta(days=days_ago)).astimezone(NEW_YORK)
        join(tenant, n, T0, birthday=Birthday(month=day.month, day=day.day), timezone=zone)
    flow = flow_create(
        tenant=tenant,
        now=T0,
        name="Birthday",
        trigger={"type": "birthday", "at": "10:00"},
        steps={"start": "a", "steps": {"a": {"type": "send_sms", "body": "Happy birthday!"}}},
    )
    report = flow_dry_run(flow=flow, days=7, now=now)
    assert report.entered == 2
    assert report.steps["a"].texts == 2 and report.steps["a"].sent == 2
    with tenant_scope(tenant):
        assert not FlowRun.objects.exists() and not OutboundMessage.objects.exists()
