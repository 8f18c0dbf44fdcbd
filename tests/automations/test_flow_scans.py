"""Date triggers found by the scans: who enters, when (a local time of day in each member's
zone), under which occurrence, and never twice — however often the scan runs or wherever
it was killed. Each trigger is checked against a plain Python reading of the same rule on
members of two brands in four zones, built through the real services; the clock is a fake.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from automations.models import Flow, FlowRun, FlowRunLog
from automations.services import flow_scans
from automations.services.flow_scans import flow_scans_run
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import OutboundMessage
from messaging.services.dispatch import dispatch_due
from messaging.services.setup import sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member, PointsLot, Redemption, Reward
from programs.selectors import member_context, next_tier_for
from programs.services.members import Birthday, member_upsert
from programs.services.orders import order_record
from programs.services.program import program_get, program_update, reward_create, tier_create
from programs.services.rewards import redemption_cancel, redemption_create
from segments.services import segment_create

# Saturday 27 February 2027, 12:00 UTC: 07:00 in New York, 04:00 in Los Angeles, 12:00 in
# London, 17:30 in Kolkata. 2027 has no 29 February.
T0 = datetime(2027, 2, 27, 12, 0, tzinfo=UTC)
TEXT = {"start": "t", "steps": {"t": {"type": "send_sms", "body": "Hi {first_name}", "next": None}}}
TRIGGERS = {
    "birthday": {"type": "birthday", "days_before": 0, "at": "10:00"},
    "birthday_soon": {"type": "birthday", "days_before": 3, "at": "10:00"},
    "expiring_30": {"type": "points_expiring", "days": 30, "at": "10:00"},
    "expiring_7": {"type": "points_expiring", "days": 7, "at": "09:30"},
    "winback": {"type": "winback", "days": 60, "at": "10:00"},
    "near_next_tier": {"type": "near_next_tier", "points": 60, "at": "10:00"},
    "unredeemed": {"type": "unredeemed_balance", "days": 30, "at": "10:00"},
    "anniversary": {"type": "anniversary", "at": "10:00"},
}


def live(tenant: Tenant, name: str, trigger: dict, **fields) -> Flow:
    flow = flow_create(tenant=tenant, now=T0, name=name, trigger=trigger, steps=TEXT, **fields)
    return flow_set_status(flow=flow, status="live", now=T0)


def brand_in(tenant: Tenant, zone: str) -> Tenant:
    tenant.timezone = zone
    tenant.save(update_fields=["timezone"])
    with tenant_scope(tenant):
        program_update(program=program_get(tenant), expiry_policy="lot", expiry_days=90)
        tier_create(
            tenant=tenant, name="Silver", threshold=Decimal(100), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
        tier_create(
            tenant=tenant, name="Gold", threshold=Decimal(300), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
    return tenant


def enroll(tenant: Tenant, n: int, at: datetime, *, zone: str = "", birthday=None, **profile):
    return member_upsert(
        tenant=tenant,
        external_id=f"m{n}",
        now=at,
        first_name=f"Pat{n}",
        timezone=zone,
        birthday=birthday,
        **profile,
    ).member


def order(tenant: Tenant, member: Member, n: int, at: datetime, amount: int) -> None:
    order_record(
        tenant=tenant,
        order_id=f"{member.external_id}-o{n}",
        member_external_id=member.external_id,
        subtotal=Decimal(amount),
        currency="USD",
        now=at,
        placed_at=at,
    )


def populate(tenant: Tenant, other_zone: str) -> None:
    """Twenty members, half in the brand's zone and half in `other_zone`: birthdays around
    the scanned days (one on 29 February, one unknown), enrollments around this day in past
    years (one on 29 February 2024, a few recent), two orders each (most) whose lots expire
    from a week ago to a month ahead, last orders around 60 days ago, some redemptions."""
    with tenant_scope(tenant):
        reward = reward_create(
            tenant=tenant, name="Coffee", kind="custom", points_cost=40, value="A coffee"
        )
    base = T0.date()
    for i in range(20):
        zone = "" if i % 2 == 0 else other_zone
        if i == 5:
            birthday = Birthday(month=2, day=29)
        elif i == 7:
            birthday = None
        else:
            day = base + timedelta(days=(i % 8) - 2)
            birthday = Birthday(month=day.month, day=day.day, year=1990)
        if i == 9:
            enrolled = datetime(2024, 2, 29, 15, 0, tzinfo=UTC)
        elif i in (11, 16):
            enrolled = T0 - timedelta(days=200 + i)
        else:
            years = 1 + i % 3
            enrolled = T0.replace(year=2027 - years) + timedelta(
                days=(i % 5) - 2, hours=(i * 7) % 24
            )
        member = enroll(tenant, i, enrolled, zone=zone, birthday=birthday)
        if i % 6 == 5:
            continue
        first = T0 - timedelta(days=70 + i * 1.5)
        order(tenant, member, 1, first, 20 + i * 7)
        last = T0 - timedelta(days=56 + i % 9, hours=i * 3)
        order(tenant, member, 2, last, 15 + i * 6)
        if i % 4 == 1:
            with tenant_scope(tenant):
                member = Member.objects.get(pk=member.pk)
                when = T0 - timedelta(days=i * 3)
                redemption = redemption_create(member=member, reward=reward, now=when)
                if i == 13:
                    redemption_cancel(redemption=redemption, now=when)


# --- the rules, read in plain Python ----------------------------------------------------


def _feb28_stands_for_29(day: date) -> bool:
    return (day.month, day.day) == (2, 28) and (day + timedelta(days=1)).month == 3


def expected(tenant: Tenant, flows: dict[str, Flow], at: datetime) -> set[tuple]:
    """(flow id, member id, occurrence) for every member a date flow of the brand holds for
    at `at` (entry limit "every": the trigger's own occurrence)."""
    found = set()
    with tenant_scope(tenant):
        members = list(Member.objects.select_related("tier").order_by("id"))
        lots = list(PointsLot.objects.filter(matured=True, remaining__gt=0, expires_at__gt=at))
        redeemed = {
            r.member_id
            for r in Redemption.objects.exclude(status="cancelled").filter(
                created_at__gt=at - timedelta(days=30)
            )
        }
        context = member_context(tenant, members, at)
        taken_in = {
            days: set(
                FlowRun.objects.filter(
                    entered_at__gt=at - timedelta(days=days), entered_at__lt=at
                ).values_list("flow_id", "member_id")
            )
            for days in {f.trigger.get("days") for f in flows.values()}
            if days
        }
        cheapest = min((r.points_cost for r in Reward.objects.filter(active=True)), default=None)
    soonest: dict[int, datetime] = {}
    for lot in lots:
        if lot.member_id not in soonest or lot.expires_at < soonest[lot.member_id]:
            soonest[lot.member_id] = lot.expires_at
    for flow in flows.values():
        trigger = flow.trigger
        hour, minute = (int(x) for x in trigger["at"].split(":"))
        for m in members:
            zone = ZoneInfo(m.timezone or tenant.timezone)
            local = at.astimezone(zone)
            if local.time() < time(hour, minute):
                continue
            today = local.date()
            occurrence = None
            kind = trigger["type"]
            if kind == "birthday" and m.birthday_month:
                target = today + timedelta(days=trigger["days_before"])
                if (m.birthday_month, m.birthday_day) == (target.month, target.day) or (
                    (m.birthday_month, m.birthday_day) == (2, 29) and _feb28_stands_for_29(target)
                ):
                    occurrence = str(target.year)
            elif kind == "points_expiring" and m.pk in soonest:
                end = datetime.combine(today + timedelta(days=trigger["days"] + 1), time(), zone)
                # …unless the flow took them in within the last N days (by an earlier scan)
                recent = (flow.pk, m.pk) in taken_in.get(trigger["days"], set())
                if soonest[m.pk] < end and not recent:
                    occurrence = f"exp:{soonest[m.pk].astimezone(zone).date().isoformat()}"
            elif kind == "winback" and m.last_order_at:
                last = m.last_order_at.astimezone(zone).date()
                days = trigger["days"]
                if today - timedelta(days=days + 2) <= last <= today - timedelta(days=days):
                    occurrence = f"order:{last.isoformat()}"
            elif kind == "near_next_tier":
                progress = next_tier_for(m, context)
                needed = progress and progress["points_needed"]
                if needed and 0 < needed <= trigger["points"]:
                    occurrence = f"tier:{progress['id']}"
            elif kind == "unredeemed_balance":
                days = trigger["days"]
                if (
                    cheapest is not None
                    and m.points_balance >= cheapest
                    and m.enrolled_at < at - timedelta(days=days)
                    and m.pk not in redeemed
                ):
                    occurrence = f"bal:{(today - date(1970, 1, 1)).days // days}"
            elif kind == "anniversary":
                joined = m.enrolled_at.astimezone(zone).date()
                if joined.year < today.year and (
                    (joined.month, joined.day) == (today.month, today.day)
                    or ((joined.month, joined.day) == (2, 29) and _feb28_stands_for_29(today))
                ):
                    occurrence = str(today.year)
            if occurrence is not None:
                found.add((flow.pk, m.pk, occurrence))
    return found


def entered(tenant: Tenant) -> set[tuple]:
    with tenant_scope(tenant):
        return set(FlowRun.objects.values_list("flow_id", "member_id", "occurrence"))


def run_count(tenant: Tenant) -> int:
    with tenant_scope(tenant):
        return FlowRun.objects.count()


@pytest.fixture
def brands(alice_brand, charlie_brand):
    """Alice's brand in New York (members there and in Los Angeles) with a flow of every
    date trigger; Charlie's, the outsider, in London (members there and in Kolkata) with
    the same flows of its own."""
    alice = brand_in(alice_brand.tenant, "America/New_York")
    charlie = brand_in(charlie_brand.tenant, "Europe/London")
    populate(alice, "America/Los_Angeles")
    populate(charlie, "Asia/Kolkata")
    flows = {
        tenant.pk: {name: live(tenant, name, trigger) for name, trigger in TRIGGERS.items()}
        for tenant in (alice, charlie)
    }
    return alice, charlie, flows


# --- the tests --------------------------------------------------------------------------


def test_every_date_trigger_enters_whom_its_rule_holds_for_in_each_members_zone(brands):
    alice, charlie, flows = brands
    wanted = {alice.pk: set(), charlie.pk: set()}
    at = T0
    for _ in range(24):  # every 2 h 15 min for two and a half days: days and zones turn
        report = flow_scans_run(now=at)
        for tenant in (alice, charlie):
            wanted[tenant.pk] |= expected(tenant, flows[tenant.pk], at)
            assert entered(tenant) == wanted[tenant.pk], at
        assert set(report["tenants"]) <= {alice.pk, charlie.pk}
        at += timedelta(hours=2, minutes=15)
    for tenant in (alice, charlie):
        kinds = Counter(
            flow.trigger["type"]
            for flow_id, _, _ in wanted[tenant.pk]
            for flow in flows[tenant.pk].values()
            if flow.pk == flow_id
        )
        # The fixture gives every trigger someone to enter, in both brands.
        assert set(kinds) == {t["type"] for t in TRIGGERS.values()}, kinds
        # Members of the other zone entered too, and nobody of the other brand.
        with tenant_scope(tenant):
            zones = set(
                Member.objects.filter(pk__in=[m for _, m, _ in wanted[tenant.pk]]).values_list(
                    "timezone", flat=True
                )
            )
            assert len(zones) == 2
            assert not FlowRun.objects.exclude(member__tenant=tenant).exists()


def test_a_flow_waits_for_its_local_time_in_each_members_zone(alice_brand):
    alice = brand_in(alice_brand.tenant, "America/New_York")
    today = Birthday(month=2, day=27)
    ny = enroll(alice, 1, T0 - timedelta(days=400), birthday=today)
    la = enroll(alice, 2, T0 - timedelta(days=400), zone="America/Los_Angeles", birthday=today)
    flow = live(alice, "Birthday", {"type": "birthday", "at": "10:00"})
    flow_scans_run(now=datetime(2027, 2, 27, 14, 45, tzinfo=UTC))  # 09:45 NY, 06:45 LA
    assert entered(alice) == set()
    flow_scans_run(now=datetime(2027, 2, 27, 15, 0, tzinfo=UTC))  # 10:00 NY
    assert entered(alice) == {(flow.pk, ny.pk, "2027")}
    flow_scans_run(now=datetime(2027, 2, 27, 17, 45, tzinfo=UTC))  # 09:45 LA
    assert entered(alice) == {(flow.pk, ny.pk, "2027")}
    flow_scans_run(now=datetime(2027, 2, 27, 18, 0, tzinfo=UTC), tenant=alice)  # 10:00 LA
    assert entered(alice) == {(flow.pk, ny.pk, "2027"), (flow.pk, la.pk, "2027")}
    # After midnight in New York it is no longer the day there (it still is in LA).
    flow_scans_run(now=datetime(2027, 2, 28, 6, 0, tzinfo=UTC))
    assert run_count(alice) == 2


def test_running_every_scan_twice_enters_nobody_twice(brands):
    alice, charlie, _ = brands
    at = T0 + timedelta(hours=6)  # 13:00 New York, 10:00 LA, 18:00 London, 23:30 Kolkata
    first = flow_scans_run(now=at)
    runs = {t.pk: entered(t) for t in (alice, charlie)}
    assert sum(first["entered"].values()) == sum(len(r) for r in runs.values()) > 0
    again = flow_scans_run(now=at)
    later = flow_scans_run(now=at + timedelta(minutes=15))
    assert sum(again["entered"].values()) == 0 and again["tenants"] == []
    assert sum(later["entered"].values()) == 0
    for tenant in (alice, charlie):
        assert entered(tenant) == runs[tenant.pk]
        with tenant_scope(tenant):
            logs = Counter(FlowRunLog.objects.filter(action="entered").values_list("run_id"))
        assert len(logs) == run_count(tenant) and set(logs.values()) == {1}


def test_a_scan_killed_midway_and_run_again_texts_each_member_once(alice_brand, monkeypatch):
    alice = brand_in(alice_brand.tenant, "America/New_York")
    sender = sender_default(alice)
    sender.mps = 100
    sender.save(update_fields=["mps"])
    born = T0.date()
    for n in range(6):
        # Three members have their birthday today, three ordered last 60 days ago.
        birthday = Birthday(born.month, born.day) if n < 3 else None
        member = enroll(alice, n, T0 - timedelta(days=500), birthday=birthday)
        order(alice, member, 1, T0 - timedelta(days=60 if n >= 3 else 20, hours=n), 30)
        subscriber_opt_in(
            tenant=alice,
            phone=f"+1212555{n:04d}",
            evidence=Evidence(source="checkout"),
            now=T0 - timedelta(days=500),
            member=member,
            double_opt_in=False,
            send_confirmation=False,
        )
    birthday = live(alice, "Birthday", {"type": "birthday", "at": "10:00"})
    winback = live(alice, "Win-back", {"type": "winback", "days": 60, "at": "10:00"})
    at = datetime(2027, 2, 27, 16, 0, tzinfo=UTC)  # 11:00 in New York
    real = flow_scans._enter_plain

    def dies_after_the_birthdays(kind, **kwargs):
        result = real(kind, **kwargs)
        if kind == "birthday":
            raise RuntimeError("worker killed")
        return result

    monkeypatch.setattr(flow_scans, "_enter_plain", dies_after_the_birthdays)
    with pytest.raises(RuntimeError):
        flow_scans_run(now=at)
    monkeypatch.setattr(flow_scans, "_enter_plain", real)
    with tenant_scope(alice):
        assert Counter(FlowRun.objects.values_list("flow_id", flat=True)) == {birthday.pk: 3}
    flow_scans_run(now=at + timedelta(minutes=15))
    flow_scans_run(now=at + timedelta(minutes=30))
    with tenant_scope(alice):
        per_member = Counter(FlowRun.objects.values_list("member_id", flat=True))
        assert Counter(FlowRun.objects.values_list("flow_id", flat=True)) == {
            birthday.pk: 3,
            winback.pk: 3,
        }
    assert len(per_member) == 6 and set(per_member.values()) == {1}
    clock = at + timedelta(minutes=45)
    for _ in range(2):
        flows_work_once(tenant=alice, now=lambda: clock)
        dispatch_due(now=lambda: clock)
    with tenant_scope(alice):
        texts = list(OutboundMessage.objects.filter(source="flow"))
    assert len(texts) == 6 and {t.status for t in texts} == {"sent"}
    assert len({t.subscriber_id for t in texts}) == 6


def test_entry_limits_once_and_yearly(alice_brand):
    alice = brand_in(alice_brand.tenant, "America/New_York")
    member = enroll(alice, 1, T0 - timedelta(days=400))
    trigger = {"type": "points_expiring", "days": 7, "at": "10:00"}
    flows = {
        limit: live(alice, limit, trigger, entry_limit=limit)
        for limit in ("once", "yearly", "every")
    }
    # Lots earned on two days expire 90 days later (lot expiry), ten days apart.
    order(alice, member, 1, T0 - timedelta(days=88), 50)
    order(alice, member, 2, T0 - timedelta(days=78), 50)
    first = datetime(2027, 2, 27, 16, 0, tzinfo=UTC)
    flow_scans_run(now=first)
    flow_scans_run(now=first + timedelta(days=10))  # the first lot has expired
    # A year later, a new lot about to expire.
    next_year = first + timedelta(days=365)
    order(alice, member, 3, next_year - timedelta(days=88), 50)
    flow_scans_run(now=next_year)
    with tenant_scope(alice):
        runs = {
            limit: sorted(FlowRun.objects.filter(flow=flow).values_list("occurrence", flat=True))
            for limit, flow in flows.items()
        }
    assert runs["once"] == ["once"]
    assert runs["yearly"] == ["2027", "2028"]
    assert runs["every"] == ["exp:2027-03-02", "exp:2027-03-12", "exp:2028-03-01"]


def test_segment_filter_audience_and_paused_or_draft_flows(alice_brand):
    alice = brand_in(alice_brand.tenant, "America/New_York")
    today = Birthday(month=2, day=27)
    vip = enroll(alice, 1, T0 - timedelta(days=400), birthday=today, tags=["vip"])
    enroll(alice, 2, T0 - timedelta(days=400), birthday=today)
    with tenant_scope(alice):
        segment = segment_create(
            tenant=alice,
            name="VIPs",
            rules={"field": "tags", "op": "has", "value": "vip"},
            now=T0,
        )
    trigger = {"type": "birthday", "at": "10:00"}
    vips = live(alice, "VIP birthdays", trigger, segment_id=segment.pk)
    everyone = live(alice, "Birthdays", trigger)
    paused = live(alice, "Paused", trigger)
    flow_set_status(flow=paused, status="paused", now=T0)
    flow_create(tenant=alice, now=T0, name="Draft", trigger=trigger, steps=TEXT)
    walk_ins = live(alice, "Walk-ins", trigger, audience="non_members")
    at = datetime(2027, 2, 27, 16, 0, tzinfo=UTC)
    report = flow_scans_run(now=at)
    flow_scans_run(now=at)
    with tenant_scope(alice):
        runs = Counter(FlowRun.objects.values_list("flow_id", flat=True))
        logged = FlowRunLog.objects.filter(action="entered").count()
    assert runs == {vips.pk: 1, everyone.pk: 2}
    assert logged == 3 and report["entered"]["birthday"] == 3
    assert entered(alice) >= {(vips.pk, vip.pk, "2027")}
    assert walk_ins.pk not in runs


def test_29_february_is_kept_on_the_28th_when_the_year_has_none(alice_brand):
    alice = brand_in(alice_brand.tenant, "America/New_York")
    leapling = enroll(
        alice, 1, datetime(2024, 2, 29, 17, 0, tzinfo=UTC), birthday=Birthday(month=2, day=29)
    )
    enroll(alice, 2, datetime(2024, 3, 1, 17, 0, tzinfo=UTC), birthday=Birthday(month=3, day=1))
    birthday = live(alice, "Birthday", {"type": "birthday", "at": "10:00"})
    anniversary = live(alice, "Anniversary", {"type": "anniversary", "at": "10:00"})
    flow_scans_run(now=datetime(2027, 2, 28, 16, 0, tzinfo=UTC))
    assert entered(alice) == {
        (birthday.pk, leapling.pk, "2027"),
        (anniversary.pk, leapling.pk, "2027"),
    }
    # In a leap year, on the day itself (and not on the 28th).
    flow_scans_run(now=datetime(2028, 2, 28, 16, 0, tzinfo=UTC))
    assert len(entered(alice)) == 2
    flow_scans_run(now=datetime(2028, 2, 29, 16, 0, tzinfo=UTC))
    assert (birthday.pk, leapling.pk, "2028") in entered(alice)
    assert (anniversary.pk, leapling.pk, "2028") in entered(alice)


def test_the_beat_task_scans_and_wakes_the_brands_with_new_runs(alice_brand, monkeypatch):
    from django.core.cache import cache
    from django.utils import timezone

    from automations import tasks

    alice = brand_in(alice_brand.tenant, "America/New_York")
    today = timezone.now().astimezone(ZoneInfo("America/New_York")).date()
    enroll(alice, 1, timezone.now(), birthday=Birthday(month=today.month, day=today.day))
    live(alice, "Birthday", {"type": "birthday", "at": "00:00"})
    woken = []
    monkeypatch.setattr(tasks.flows_work, "delay", lambda tenant_id: woken.append(tenant_id))
    cache.delete(tasks._flows_key(alice.pk))
    report = tasks.flow_scans()
    assert report["entered"]["birthday"] == 1 and woken == [alice.pk]
    cache.delete(tasks._flows_key(alice.pk))
    assert tasks.flow_scans()["tenants"] == [] and woken == [alice.pk]
    beat = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert beat["automations.tasks.flow_scans"] == 15 * 60


@pytest.mark.parametrize(
    ("basis", "period"),
    [
        ("points_earned", "calendar_year"),
        ("points_earned", "rolling_12_months"),
        ("spend", "lifetime"),  # no "points to the next tier": nobody enters
    ],
)
def test_near_next_tier_counts_what_programs_counts_in_the_tier_period(alice_brand, basis, period):
    alice = alice_brand.tenant
    with tenant_scope(alice):
        program_update(program=program_get(alice), enrollment_bonus=30)
        silver = tier_create(
            tenant=alice, name="Silver", threshold=Decimal(150), basis=basis, period=period
        )
        tier_create(tenant=alice, name="Gold", threshold=Decimal(400), basis=basis, period=period)
    at = datetime(2027, 2, 27, 16, 0, tzinfo=UTC)  # 11:00 in New York
    for n in range(12):
        # Enrolled (with the bonus) this year or last; orders from 14 months ago to last week.
        member = enroll(alice, n, at - timedelta(days=20 + n * 30))
        for k in range(n % 4):
            order(alice, member, k, at - timedelta(days=7 + k * 60 + n * 9), 40 + n * 5)
    flow = live(alice, "Almost there", {"type": "near_next_tier", "points": 140, "at": "10:00"})
    flow_scans_run(now=at)
    wanted = expected(alice, {"near": flow}, at)
    assert entered(alice) == wanted
    if basis == "spend":
        assert wanted == set()
    else:
        assert {o for _, _, o in wanted} <= {f"tier:{silver.pk}", f"tier:{silver.pk + 1}"}
        assert len(wanted) >= 2
