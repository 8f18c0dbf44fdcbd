"""Expiry, maturing and tier reviews as the clock moves."""

import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from loyaltysms.tenancy.context import tenant_scope
from programs.models import LoyaltyEvent, Member, PointsEntry
from programs.services import members, orders, program, rewards, sweeps

NY = zoneinfo.ZoneInfo("America/New_York")


@pytest.fixture
def brand(alice_brand):
    with tenant_scope(alice_brand.tenant):
        yield alice_brand.tenant


def configure(tenant, **settings):
    program.program_update(program=program.program_get(tenant), **settings)


def buy(tenant, order_id, subtotal, when, member="m"):
    return orders.order_record(
        tenant=tenant,
        order_id=order_id,
        member_external_id=member,
        subtotal=Decimal(subtotal),
        currency="USD",
        now=when,
    ).order


def balance(member="m") -> int:
    return Member.objects.get(external_id=member).points_balance


def test_lots_expire_at_local_midnight_and_only_what_is_left(brand):
    configure(brand, expiry_policy="lot", expiry_days=30)
    earned = datetime(2026, 3, 1, 22, 30, tzinfo=NY)  # 03:30 UTC on 2 March
    buy(brand, "o1", "100", earned)
    buy(brand, "o2", "50", earned + timedelta(days=10))
    reward = program.reward_create(tenant=brand, name="R", kind="custom", points_cost=70, value="x")
    rewards.redemption_create(member=Member.objects.get(), reward=reward, now=earned)
    assert balance() == 80  # o1's lot has 30 left, o2's 50

    just_before = datetime(2026, 3, 31, 23, 59, tzinfo=NY)
    assert sweeps.points_expire_due(tenant=brand, now=just_before).entries == 0
    midnight = datetime(2026, 4, 1, 0, 0, tzinfo=NY)  # end of local day 1 March + 30
    assert sweeps.points_expire_due(tenant=brand, now=midnight).entries == 1
    assert balance() == 50
    entry = PointsEntry.objects.filter(kind="expire").get()
    assert (entry.points, entry.balance_after) == (-30, 50)
    assert entry.reason == "30 points expired (earned more than 30 days ago)"
    # Idempotent: the same sweep again finds nothing.
    assert sweeps.points_expire_due(tenant=brand, now=midnight).entries == 0
    assert LoyaltyEvent.objects.filter(kind="points_expired").count() == 1


def test_inactivity_expires_the_whole_balance_only_after_n_idle_days(brand):
    configure(brand, expiry_policy="inactivity", expiry_days=90)
    start = datetime(2026, 1, 5, 12, tzinfo=NY)
    buy(brand, "o1", "40", start)
    buy(brand, "o2", "60", start + timedelta(days=80))  # activity resets the clock
    sweeps.points_expire_due(tenant=brand, now=start + timedelta(days=100))
    assert balance() == 100
    sweeps.points_expire_due(tenant=brand, now=start + timedelta(days=171))
    assert balance() == 0


def test_pending_points_mature_in_the_sweep(brand):
    configure(brand, pending_days=7)
    start = datetime(2026, 5, 1, 12, tzinfo=NY)
    buy(brand, "o1", "25", start)
    buy(brand, "o2", "10", start + timedelta(days=1))
    member = Member.objects.get()
    assert (member.points_balance, member.points_pending) == (0, 35)
    result = sweeps.pending_mature_due(tenant=brand, now=start + timedelta(days=7, hours=1))
    assert result.entries == 1
    member.refresh_from_db()
    assert (member.points_balance, member.points_pending) == (25, 10)
    sweeps.pending_mature_due(tenant=brand, now=start + timedelta(days=9))
    member.refresh_from_db()
    assert (member.points_balance, member.points_pending) == (35, 0)
    assert list(PointsEntry.objects.order_by("id").values_list("points", "balance_after")) == [
        (25, 25),
        (10, 35),
    ]


def test_calendar_year_tier_is_kept_through_the_next_year_then_reviewed(brand):
    program.tier_create(
        tenant=brand, name="Gold", threshold=Decimal(100), basis="spend", period="calendar_year"
    )
    buy(brand, "o1", "150", datetime(2026, 6, 1, tzinfo=NY))
    assert Member.objects.get().tier.name == "Gold"
    sweeps.tier_reviews_due(tenant=brand, now=datetime(2027, 1, 1, 0, 5, tzinfo=NY))
    assert Member.objects.get().tier.name == "Gold"  # qualified in 2026: kept for 2027
    sweeps.tier_reviews_due(tenant=brand, now=datetime(2028, 1, 1, 0, 5, tzinfo=NY))
    member = Member.objects.get()
    assert member.tier is None  # nothing in 2027
    assert member.tier_changes.order_by("id").last().direction == "down"


def test_birthday_bonus_is_paid_once_a_year(brand):
    configure(brand, birthday_bonus=50)
    member = members.member_upsert(
        tenant=brand, external_id="b", now=datetime(2026, 1, 1, tzinfo=NY)
    ).member
    day = datetime(2026, 7, 4, 9, tzinfo=NY)
    assert members.bonus_award(member=member, kind="birthday", now=day) is not None
    assert members.bonus_award(member=member, kind="birthday", now=day) is None
    assert (
        members.bonus_award(member=member, kind="birthday", now=day.replace(year=2027)) is not None
    )
    assert balance("b") == 100


def test_the_daily_sweep_pays_birthdays_in_local_time_once(brand):
    configure(brand, birthday_bonus=30)
    joined = datetime(2026, 1, 1, tzinfo=NY)
    for external_id, birthday in [("apr", (4, 12)), ("leap", (2, 29)), ("other", (5, 1))]:
        members.member_upsert(
            tenant=brand,
            external_id=external_id,
            now=joined,
            birthday=members.Birthday(month=birthday[0], day=birthday[1]),
        )
    # 11 April 23:30 in New York is already 12 April in UTC: not their birthday yet.
    eve = datetime(2026, 4, 11, 23, 30, tzinfo=NY)
    assert sweeps.birthday_bonuses_due(tenant=brand, now=eve).entries == 0
    day = datetime(2026, 4, 12, 8, 0, tzinfo=NY)
    assert sweeps.birthday_bonuses_due(tenant=brand, now=day).entries == 1
    assert sweeps.birthday_bonuses_due(tenant=brand, now=day).entries == 0
    assert balance("apr") == 30
    entry = PointsEntry.objects.get(member__external_id="apr")
    assert (entry.kind, entry.source, entry.bonus_key) == ("earn", "bonus", "birthday:2026")
    # 2027 has no 29 February: the leap-day member celebrates on the 28th.
    sweeps.birthday_bonuses_due(tenant=brand, now=datetime(2027, 2, 28, 9, tzinfo=NY))
    assert balance("leap") == 30


def test_the_sweep_task_runs_in_the_brands_scope(alice_brand):
    from programs.tasks import sweep_program

    result = sweep_program.apply(args=[alice_brand.tenant.pk]).get()
    assert set(result) == {"matured_entries", "expired_members", "birthday_bonuses", "tier_changes"}


def test_rolling_12_months_reviews_a_year_after_the_tier_was_reached(brand):
    program.tier_create(
        tenant=brand, name="Gold", threshold=Decimal(100), basis="spend", period="rolling_12_months"
    )
    reached = datetime(2026, 3, 10, 12, tzinfo=NY)
    buy(brand, "o1", "120", reached)
    member = Member.objects.get()
    assert member.tier.name == "Gold"
    assert member.tier_review_at == reached + timedelta(days=365)
    # Before the review nothing moves, even though March 2026 is long past.
    sweeps.tier_reviews_due(tenant=brand, now=reached + timedelta(days=300))
    assert Member.objects.get().tier.name == "Gold"
    # A purchase in the last 12 months keeps the tier at the review...
    buy(brand, "o2", "100", reached + timedelta(days=200))
    sweeps.tier_reviews_due(tenant=brand, now=reached + timedelta(days=366))
    kept = Member.objects.get()
    assert kept.tier.name == "Gold" and kept.tier_review_at > reached + timedelta(days=700)
    # ...and without one the next review lowers it.
    sweeps.tier_reviews_due(tenant=brand, now=reached + timedelta(days=366 * 2 + 1))
    assert Member.objects.get().tier is None


def test_lifetime_tiers_never_go_down(brand):
    program.tier_create(
        tenant=brand,
        name="Founder",
        threshold=Decimal(50),
        basis="points_earned",
        period="lifetime",
    )
    order = buy(brand, "o1", "60", datetime(2020, 1, 1, tzinfo=NY))
    orders.refund_record(
        order=order, refund_id="r1", amount=Decimal("60"), now=datetime(2020, 2, 1, tzinfo=NY)
    )
    sweeps.program_sweep(tenant=brand, now=datetime(2030, 1, 1, tzinfo=NY))
    member = Member.objects.get()
    assert member.tier.name == "Founder" and member.tier_review_at is None
