"""Flows run from the real outbox: events start runs (entry rules, audience, occurrence),
steps take effect once (texts, points, reward codes, tags, sunset), waits live in the run,
branches read the member and the clicks, exits end runs, and a flow is checked before it is
saved. The clock is a fake one; the dispatcher and sandbox are the real ones."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from automations.flows.spec import FlowInvalid
from automations.models import Flow, FlowRun, FlowRunLog, RunStatus
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status, flow_update
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import OutboundMessage, Subscriber, SubscriberStatus
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member, PointsEntry, Redemption, Reward
from programs.services.program import tier_create

from .conftest import Clock, buy, in_new_york, join, tap_link

# 14:00 in New York.
T0 = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def brand(alice_brand):
    return in_new_york(alice_brand.tenant)


def run_flows(tenant, clock: Clock) -> dict:
    return flows_work_once(tenant=tenant, now=clock)


def texts(tenant, flow: Flow) -> list[OutboundMessage]:
    with tenant_scope(tenant):
        return list(
            OutboundMessage.objects.filter(source="flow", source_ref=str(flow.pk)).order_by("id")
        )


def runs(tenant, flow: Flow) -> list[FlowRun]:
    with tenant_scope(tenant):
        return list(FlowRun.objects.filter(flow=flow).select_related("member").order_by("id"))


WELCOME = {
    "start": "hello",
    "steps": {
        "hello": {
            "type": "send_sms",
            "body": "Welcome {first_name}! Shop: https://shop.example/new",
            "next": "wait",
        },
        "wait": {"type": "wait", "days": 2, "until": "10:00", "next": "clicked"},
        "clicked": {
            "type": "branch",
            "if": {"type": "clicked_last"},
            "yes": "thanks",
            "no": "nudge",
        },
        "thanks": {"type": "award_points", "points": 50, "next": "thanks_text"},
        "thanks_text": {
            "type": "send_sms",
            "body": "Thanks for looking, {first_name}: 50 points added, {points_balance} now.",
            "next": None,
        },
        "nudge": {"type": "send_sms", "body": "Still there, {first_name}?", "next": "tag"},
        "tag": {"type": "add_tag", "tag": "nudged", "next": None},
    },
}


def live(tenant, clock, **fields) -> Flow:
    fields.setdefault("name", "Welcome")
    fields.setdefault("trigger", {"type": "member_enrolled"})
    fields.setdefault("steps", WELCOME)
    flow = flow_create(tenant=tenant, now=clock(), **fields)
    return flow_set_status(flow=flow, status="live", now=clock())


def test_an_event_starts_a_run_that_texts_waits_in_local_time_and_branches(brand, clock):
    flow = live(brand, clock)
    ann = join(brand, 1, clock())
    bo = join(brand, 2, clock())
    run_flows(brand, clock)
    first = texts(brand, flow)
    assert [t.body.split("!")[0] for t in first] == ["Welcome Pat1", "Welcome Pat2"]
    assert all("shop.example" not in t.body for t in first)  # tracked link
    waiting = runs(brand, flow)
    # two days later (14:00 on the 12th in New York), then on to 10:00 there: the 13th
    assert {r.next_run_at for r in waiting} == {datetime(2026, 6, 13, 14, 0, tzinfo=UTC)}
    assert {r.step for r in waiting} == {"clicked"}
    tap_link(brand, first[0])
    clock.advance(days=2, hours=19, minutes=59)  # 09:59 on the 13th in New York
    run_flows(brand, clock)
    assert len(texts(brand, flow)) == 2  # nothing due yet
    clock.advance(minutes=1)
    run_flows(brand, clock)
    bodies = {t.subscriber_id: t.body for t in texts(brand, flow)[2:]}
    with tenant_scope(brand):
        ann_number = Subscriber.objects.get(member=ann).pk
        bo_number = Subscriber.objects.get(member=bo).pk
        ann_after = Member.objects.get(pk=ann.pk)
        bo_after = Member.objects.get(pk=bo.pk)
    assert bodies[ann_number].startswith("Thanks for looking, Pat1: 50 points added, 50 now.")
    assert bodies[bo_number].startswith("Still there, Pat2?")
    assert ann_after.points_balance == 50 and "nudged" not in ann_after.tags
    assert bo_after.points_balance == 0 and bo_after.tags == ["nudged"]
    assert {r.status for r in runs(brand, flow)} == {RunStatus.DONE}


def test_every_step_happens_once_however_often_the_work_runs(brand, clock):
    flow = live(brand, clock)
    join(brand, 1, clock())
    for _ in range(3):
        run_flows(brand, clock)
    clock.advance(days=3)
    for _ in range(3):
        run_flows(brand, clock)
    assert len(runs(brand, flow)) == 1
    assert len(texts(brand, flow)) == 2
    with tenant_scope(brand):
        log = list(FlowRunLog.objects.filter(flow=flow).values_list("action", flat=True))
    assert log.count("entered") == 1 and log.count("sent") == 2


class WorkerKilled(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


def test_a_batch_rolled_back_midway_is_done_again_without_duplicates(brand, clock, monkeypatch):
    from automations.services import flow_engine

    flow = live(brand, clock)
    for n in range(5):
        join(brand, n, clock())
    calls = {"n": 0}
    real = flow_engine.message_create

    def dies_on_the_fourth(**kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise WorkerKilled
        return real(**kwargs)

    monkeypatch.setattr(flow_engine, "message_create", dies_on_the_fourth)
    with pytest.raises(WorkerKilled):
        run_flows(brand, clock)
    monkeypatch.setattr(flow_engine, "message_create", real)
    run_flows(brand, clock)
    assert len(texts(brand, flow)) == 5
    assert len({t.subscriber_id for t in texts(brand, flow)}) == 5


def test_entry_limits_and_audience(brand, clock):
    once = live(brand, clock, name="Once", trigger={"type": "order_placed"}, entry_limit="once")
    every = live(brand, clock, name="Every", trigger={"type": "order_placed"})
    walk_in = live(
        brand,
        clock,
        name="Join us",
        trigger={"type": "sms_subscribed"},
        audience="non_members",
        steps={"start": "a", "steps": {"a": {"type": "send_sms", "body": "Join!", "next": None}}},
    )
    member = join(brand, 1, clock())
    subscriber_opt_in(
        tenant=brand,
        phone="+12125559999",
        evidence=Evidence(source="keyword"),
        now=clock(),
        double_opt_in=False,
        send_confirmation=False,
    )
    for n in range(2):
        buy(brand, member, f"o{n}", clock(), 20)
    run_flows(brand, clock)
    assert len(runs(brand, once)) == 1
    assert len(runs(brand, every)) == 2
    (walk_in_run,) = runs(brand, walk_in)
    assert walk_in_run.member_id is None and len(texts(brand, walk_in)) == 1


def test_an_order_exits_a_winback_run_under_way(brand, clock):
    winback = live(
        brand,
        clock,
        name="Win-back",
        trigger={"type": "member_enrolled"},
        exit_on=["order_placed"],
        steps={
            "start": "w",
            "steps": {
                "w": {"type": "wait", "days": 30, "next": "t"},
                "t": {"type": "send_sms", "body": "We miss you", "next": None},
            },
        },
    )
    member = join(brand, 1, clock())
    join(brand, 2, clock())
    run_flows(brand, clock)
    clock.advance(days=3)
    buy(brand, member, "o1", clock(), 20)
    run_flows(brand, clock)
    clock.advance(days=30)
    run_flows(brand, clock)
    statuses = {r.member_id: (r.status, r.exit_reason) for r in runs(brand, winback)}
    assert statuses[member.pk] == (RunStatus.EXITED, "order placed")
    assert len(texts(brand, winback)) == 1


def test_reward_codes_sunset_and_the_member_changes_a_text_reports(brand, clock):
    with tenant_scope(brand):
        reward = Reward.objects.create(
            name="Free coffee", points_cost=100, active=True, created_at=clock()
        )
    flow = live(
        brand,
        clock,
        name="Birthday",
        steps={
            "start": "gift",
            "steps": {
                "gift": {"type": "issue_reward", "reward_id": reward.pk, "next": "text"},
                "text": {
                    "type": "send_sms",
                    "body": "Happy birthday! Your code: {reward_code}",
                    "next": "bye",
                },
                "bye": {"type": "unsubscribe", "next": None},
            },
        },
    )
    member = join(brand, 1, clock())
    run_flows(brand, clock)
    run_flows(brand, clock)
    with tenant_scope(brand):
        (gift,) = Redemption.objects.filter(member=member)
        number = Subscriber.objects.get(member=member)
    assert gift.points_spent == 0 and gift.entry_id is None
    (text,) = texts(brand, flow)
    assert f"Your code: {gift.code}" in text.body
    assert number.status == SubscriberStatus.UNSUBSCRIBED


def test_a_flow_is_checked_before_it_is_saved(brand, clock):
    with pytest.raises(FlowInvalid) as raised:
        flow_create(
            tenant=brand,
            now=clock(),
            name="Broken",
            trigger={"type": "birthday", "at": "25:00"},
            steps={
                "start": "a",
                "steps": {
                    "a": {"type": "send_sms", "body": "Hi {nope}", "next": "b"},
                    "b": {"type": "branch", "if": {"type": "tier_is", "tier_id": 999}, "yes": "a"},
                    "c": {"type": "send_sms", "body": "code {reward_code}", "next": None},
                },
            },
        )
    errors = raised.value.errors
    assert "trigger.at" in errors and "steps.a.body" in errors
    assert "steps.b.if.tier_id" in errors


def test_loops_unreachable_steps_and_reward_codes_without_a_gift_are_refused(brand, clock):
    with pytest.raises(FlowInvalid) as raised:
        flow_create(
            tenant=brand,
            now=clock(),
            name="Loops",
            trigger={"type": "member_enrolled"},
            steps={
                "start": "a",
                "steps": {
                    "a": {"type": "send_sms", "body": "code {reward_code}", "next": "b"},
                    "b": {"type": "wait", "days": 1, "next": "a"},
                    "c": {"type": "end"},
                },
            },
        )
    errors = raised.value.errors
    assert "steps.a" in errors and "loops" in errors["steps.a"][0]
    assert "no path" in errors["steps.c"][0]
    with tenant_scope(brand):
        reward = Reward.objects.create(name="Tea", points_cost=50, active=True, created_at=clock())
    with pytest.raises(FlowInvalid) as raised:
        flow_create(
            tenant=brand,
            now=clock(),
            name="Code on one path only",
            trigger={"type": "member_enrolled"},
            steps={
                "start": "b",
                "steps": {
                    "b": {"type": "branch", "if": {"type": "subscribed"}, "yes": "g", "no": "t"},
                    "g": {"type": "issue_reward", "reward_id": reward.pk, "next": "t"},
                    "t": {"type": "send_sms", "body": "code {reward_code}", "next": None},
                },
            },
        )
    assert list(raised.value.errors) == ["steps.t.body"]  # the "no" path has no code


def test_a_paused_flow_lets_nobody_in_and_its_runs_wait(brand, clock):
    flow = live(brand, clock)
    join(brand, 1, clock())
    flow_set_status(flow=flow, status="paused", now=clock())
    join(brand, 2, clock())
    run_flows(brand, clock)
    assert runs(brand, flow) == [] and texts(brand, flow) == []
    flow_set_status(flow=flow, status="live", now=clock())
    join(brand, 3, clock())
    run_flows(brand, clock)
    assert len(runs(brand, flow)) == 1


def test_tier_upgrade_trigger_to_one_tier_and_the_tier_branch(brand, clock):
    with tenant_scope(brand):
        tier_create(
            tenant=brand, name="Silver", threshold=Decimal(10), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
        gold = tier_create(
            tenant=brand, name="Gold", threshold=Decimal(100), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
    flow = live(
        brand,
        clock,
        name="VIP",
        trigger={"type": "tier_upgraded", "tier_id": gold.pk},
        steps={
            "start": "t",
            "steps": {"t": {"type": "send_sms", "body": "Welcome to {vip_tier}!", "next": None}},
        },
    )
    member = join(brand, 1, clock())
    for n, amount in enumerate((20, 200)):
        buy(brand, member, f"o{n}", clock(), amount)
    run_flows(brand, clock)
    (text,) = texts(brand, flow)
    assert text.body.startswith("Welcome to Gold!")
    flow_update(flow=flow, now=clock(), name="VIP welcome")
    flow.refresh_from_db()
    assert flow.version == 2


def test_points_awarded_by_a_flow_are_one_ledger_entry(brand, clock):
    flow = live(
        brand,
        clock,
        name="Bonus",
        steps={"start": "p", "steps": {"p": {"type": "award_points", "points": 25, "next": None}}},
    )
    member = join(brand, 1, clock(), subscribe=False)
    run_flows(brand, clock)
    run_flows(brand, clock)
    with tenant_scope(brand):
        entries = list(PointsEntry.objects.filter(member=member, source="bonus"))
    assert [e.points for e in entries] == [25]
    assert entries[0].bonus_key == f"flow:{runs(brand, flow)[0].pk}:p"


def test_points_a_flow_gives_start_no_flow(brand, clock):
    """A flow on "points earned" that awards points would otherwise start itself again on
    its own award, for ever."""
    flow = live(
        brand,
        clock,
        name="Thanks for earning",
        trigger={"type": "points_earned"},
        steps={"start": "p", "steps": {"p": {"type": "award_points", "points": 5, "next": None}}},
    )
    member = join(brand, 1, clock(), subscribe=False)
    buy(brand, member, "o1", clock(), 20)
    for _ in range(4):
        run_flows(brand, clock)
    assert len(runs(brand, flow)) == 1
    with tenant_scope(brand):
        assert Member.objects.get(pk=member.pk).points_balance == 20 + 5


def test_an_exit_right_after_the_trigger_ends_the_run_it_began(brand, clock):
    """Enrolled and ordered at checkout, one request: the win-back never starts texting."""
    flow = live(
        brand,
        clock,
        name="Win-back",
        exit_on=["order_placed"],
        steps={
            "start": "t",
            "steps": {"t": {"type": "send_sms", "body": "Miss you", "next": None}},
        },
    )
    member = join(brand, 1, clock())
    buy(brand, member, "o1", clock(), 20)
    run_flows(brand, clock)
    (run,) = runs(brand, flow)
    assert (run.status, run.exit_reason) == (RunStatus.EXITED, "order placed")
    assert texts(brand, flow) == []


def test_a_run_that_fails_stops_alone_and_the_others_go_on(brand, clock, monkeypatch):
    from automations.services import flow_engine

    flow = live(brand, clock)
    join(brand, 1, clock())
    join(brand, 2, clock())
    real = flow_engine.message_create

    def breaks_for_pat1(**kwargs):
        if kwargs["values"].get("first_name") == "Pat1":
            raise ValueError("the template broke")
        return real(**kwargs)

    monkeypatch.setattr(flow_engine, "message_create", breaks_for_pat1)
    run_flows(brand, clock)
    by_name = {r.member.first_name: r for r in runs(brand, flow)}
    assert by_name["Pat1"].status == RunStatus.STOPPED
    assert by_name["Pat1"].exit_reason == "failed: the template broke"
    assert by_name["Pat2"].status == RunStatus.ACTIVE and by_name["Pat2"].step == "clicked"
    assert [t.body.split("!")[0] for t in texts(brand, flow)] == ["Welcome Pat2"]


def test_a_subscription_trigger_can_leave_imported_numbers_out(brand, clock):
    flow = live(
        brand,
        clock,
        name="Welcome",
        trigger={"type": "sms_subscribed", "sources": ["checkout", "keyword"]},
        steps={
            "start": "t",
            "steps": {"t": {"type": "send_sms", "body": "Welcome!", "next": None}},
        },
    )
    assert flow.trigger["sources"] == ["checkout", "keyword"]
    join(brand, 1, clock())  # at checkout
    subscriber_opt_in(
        tenant=brand,
        phone="+12125559998",
        evidence=Evidence(source="import"),
        now=clock(),
        double_opt_in=False,
        send_confirmation=False,
    )
    run_flows(brand, clock)
    assert len(texts(brand, flow)) == 1
    with pytest.raises(FlowInvalid) as raised:
        flow_update(flow=flow, now=clock(), trigger={"type": "sms_subscribed", "sources": ["x"]})
    assert "trigger.sources" in raised.value.errors
