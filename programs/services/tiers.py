"""VIP tiers: what a member qualifies with, upgrades at once, downgrades at the period's end.

The rule (one ladder; every tier shares a basis and a period):
- Qualifying value over a window: with basis points_earned, the points orders earned (less
  what refunds took back) plus bonus points; with basis spend, order subtotals less refunds.
  Orders count on the day they were placed.
- Upgrade at once: after an order or a bonus, the member rises to the highest tier whose
  threshold the current period's value reaches.
- Downgrade only at a review, which sets the tier the value supports. calendar_year reviews
  on 1 January (brand's time zone): the member keeps the better of what the year just ended
  and the year so far qualify for.
  rolling_12_months reviews 12 months after the tier was reached, against the 12 months
  before the review. lifetime never reviews (only an upgrade changes the tier).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db import connection

from loyaltysms.db import write_together
from loyaltysms.tenancy.context import require_tenant
from programs.models import (
    EventKind,
    LoyaltyEvent,
    Member,
    Tier,
    TierBasis,
    TierChange,
    TierPeriod,
)
from programs.services.ledger import local_midnight, tenant_zone
from programs.services.program import tier_ladder_get

ZERO = Decimal(0)


def tier_ladder() -> list[Tier]:
    return tier_ladder_get(require_tenant("tier ladder"))


def period_start(tier: Tier, member_tenant, now: datetime) -> datetime | None:
    """Where the current qualification window starts (None: the beginning of time)."""
    if tier.period == TierPeriod.CALENDAR_YEAR:
        local = now.astimezone(tenant_zone(member_tenant))
        return local_midnight(member_tenant, local.date().replace(month=1, day=1))
    if tier.period == TierPeriod.ROLLING_12_MONTHS:
        return now - relativedelta(months=12)
    return None


# One statement for any number of members: orders (and, on points, bonus entries) summed per
# member over the window, each through its (tenant, member, …) index.
_QUALIFYING = """
SELECT m.id,
  COALESCE((SELECT sum({order_value}) FROM programs_order o
            WHERE o.tenant_id = %(tenant)s AND o.member_id = m.id
              AND o.placed_at <= %(end)s AND o.placed_at >= %(start)s), 0)
  + CASE WHEN %(points)s THEN
      COALESCE((SELECT sum(e.points) FROM programs_pointsentry e
                WHERE e.tenant_id = %(tenant)s AND e.member_id = m.id AND e.kind = 'earn'
                  AND e.source = 'bonus'
                  AND e.created_at <= %(end)s AND e.created_at >= %(start)s), 0)
    ELSE 0 END
FROM unnest(%(ids)s::bigint[]) AS m(id)
"""
ORDER_VALUE = {
    TierBasis.POINTS_EARNED: "o.points_awarded - o.points_reversed",
    TierBasis.SPEND: "o.subtotal - o.refunded_amount",
}
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def qualifying_values(
    members: Iterable[Member], tier: Tier, *, start: datetime | None, end: datetime
) -> dict[int, Decimal]:
    """Each member's qualifying value in [start, end] (see the module rule)."""
    ids = [m.pk for m in members]
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _QUALIFYING.format(order_value=ORDER_VALUE[TierBasis(tier.basis)]),
            {
                "tenant": tier.tenant_id,
                "ids": ids,
                "start": start or BEGINNING,
                "end": end,
                "points": tier.basis == TierBasis.POINTS_EARNED,
            },
        )
        return {member_id: Decimal(value) for member_id, value in cursor.fetchall()}


def qualifying_value(member: Member, tier: Tier, now: datetime) -> Decimal:
    start = period_start(tier, member.tenant, now)
    return qualifying_values([member], tier, start=start, end=now)[member.pk]


def tier_for(ladder: list[Tier], value: Decimal) -> Tier | None:
    reached = [tier for tier in ladder if tier.threshold <= value]
    return reached[-1] if reached else None


def _rank(ladder: list[Tier], tier: Tier | None) -> int:
    return -1 if tier is None else [t.pk for t in ladder].index(tier.pk)


def next_review(tier: Tier, member_tenant, now: datetime) -> datetime | None:
    if tier.period == TierPeriod.CALENDAR_YEAR:
        local = now.astimezone(tenant_zone(member_tenant)).date()
        return local_midnight(member_tenant, local.replace(year=local.year + 1, month=1, day=1))
    if tier.period == TierPeriod.ROLLING_12_MONTHS:
        return now + relativedelta(months=12)
    return None


def _move(
    member: Member, ladder, to: Tier | None, *, value: Decimal, reason: str, now: datetime
) -> list:
    """Move the member to `to` in memory; the tier-history row and the event to write."""
    up = _rank(ladder, to) > _rank(ladder, member.tier)
    direction = "up" if up else "down"
    rows = [
        TierChange(
            tenant_id=member.tenant_id,
            member=member,
            from_tier=member.tier,
            to_tier=to,
            direction=direction,
            qualifying_value=value,
            reason=reason,
            created_at=now,
        ),
        LoyaltyEvent(
            tenant_id=member.tenant_id,
            member=member,
            kind=EventKind.TIER_CHANGED,
            created_at=now,
            payload={
                "direction": direction,
                "from_tier": member.tier.name if member.tier else None,
                "to_tier": to.name if to else None,
                "from_tier_id": member.tier_id,
                "to_tier_id": to.pk if to else None,
            },
        ),
    ]
    member.tier = to
    return rows


def tier_upgrade_rows(
    *, member: Member, ladder: list[Tier], value: Decimal, now: datetime, reason: str
) -> list:
    """Move a locked member up in memory if `value` (the current period's) reaches a higher
    tier; the rows to write with the member's `tier` and `tier_review_at`."""
    target = tier_for(ladder, value)
    if _rank(ladder, target) <= _rank(ladder, member.tier):
        return []
    rows = _move(member, ladder, target, value=value, reason=reason, now=now)
    member.tier_review_at = next_review(target, member.tenant, now)
    return rows


def tier_upgrade_before_write(
    *, member: Member, now: datetime, reason: str, unsaved_points: int = 0
) -> tuple[list, Decimal | None]:
    """The upgrade a change causes, decided before the change is written: `unsaved_points`
    are points earned now that the database doesn't hold yet. Returns the rows to write with
    the member's `tier` and `tier_review_at`, and the qualifying value (None without tiers)."""
    ladder = tier_ladder()
    if not ladder:
        return [], None
    value = qualifying_value(member, ladder[0], now)
    if ladder[0].basis == TierBasis.POINTS_EARNED:
        value += unsaved_points
    rows = tier_upgrade_rows(member=member, ladder=ladder, value=value, now=now, reason=reason)
    return rows, value


def tier_upgrade_check(*, member: Member, now: datetime, reason: str) -> bool:
    """After activity: move a locked member up if the current period's value reaches higher."""
    ladder = tier_ladder()
    if not ladder:
        return False
    value = qualifying_value(member, ladder[0], now)
    rows = tier_upgrade_rows(member=member, ladder=ladder, value=value, now=now, reason=reason)
    if rows:
        write_together(inserts=rows, updates=[(member, ["tier", "tier_review_at"])])
    return bool(rows)


def tier_review(*, member: Member, now: datetime) -> bool:
    """At a locked member's review date: keep, lower or drop the tier (see the module rule)."""
    ladder = tier_ladder()
    if not ladder:
        changed = member.tier_id is not None
        member.tier, member.tier_review_at = None, None
        member.save(update_fields=["tier", "tier_review_at", "updated_at"])
        return changed
    rule = ladder[0]
    if rule.period == TierPeriod.CALENDAR_YEAR:
        this_year = period_start(rule, member.tenant, now)
        last_year = this_year - relativedelta(years=1)
        ended = qualifying_values([member], rule, start=last_year, end=this_year)[member.pk]
        # The year just ended is [last_year, this_year); an order at exactly midnight belongs
        # to the new year, which the second value counts too: max() makes that harmless.
        so_far = qualifying_value(member, rule, now)
        value = max(ended, so_far)
    else:
        value = qualifying_value(member, rule, now)
    target = tier_for(ladder, value)
    changed = target != member.tier
    rows = (
        _move(member, ladder, target, value=value, reason="Tier review", now=now) if changed else []
    )
    member.tier_review_at = next_review(rule, member.tenant, now) if target else None
    write_together(inserts=rows, updates=[(member, ["tier", "tier_review_at"])])
    return changed


def next_tier_progress(member: Member, ladder: list[Tier], value: Decimal | None) -> dict | None:
    """The tier above the member's and how far it is: {id, name, points_needed, spend_needed}."""
    above = [tier for tier in ladder if _rank(ladder, tier) > _rank(ladder, member.tier)]
    if not above or value is None:
        return None
    tier = above[0]
    needed = max(tier.threshold - value, ZERO)
    points = tier.basis == TierBasis.POINTS_EARNED
    return {
        "id": tier.pk,
        "name": tier.name,
        "threshold": tier.threshold,
        "value": value,
        "points_needed": int(needed.to_integral_value(rounding="ROUND_CEILING"))
        if points
        else None,
        "spend_needed": None if points else needed.quantize(Decimal("0.01")),
    }
