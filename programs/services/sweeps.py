"""Time-driven ledger work for a whole brand, set-based: pending points maturing, points
expiring, birthday bonuses, tier reviews.

Expiry and maturation run as a few SQL statements per batch of members, never a Python loop
per lot or per member. Each batch is one transaction that first locks its members' rows in id
order, so it serializes with the API's ledger writes exactly like they do with each other.
Everything is idempotent: a second run at the same instant finds nothing due.

Lots expire at local midnight (programs.services.ledger.lot_expires_at), so a sweep every
15 minutes is how "daily, in the brand's time zone" is kept for every UTC offset.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import ExpiryPolicy, Member
from programs.services.ledger import lot_expires_at, member_lock, tenant_zone
from programs.services.members import BONUS_REASONS, BonusKind
from programs.services.program import program_get
from programs.services.tiers import tier_review, tier_upgrade_check

BATCH_MEMBERS = 5000

_LOCK_MEMBERS = """
SELECT id FROM programs_member WHERE tenant_id = %(tenant)s AND id = ANY(%(ids)s)
ORDER BY id FOR UPDATE
"""

# Expire what is left of the due lots of the locked members: one entry and one event per member.
_EXPIRE = """
WITH zeroed AS (
    UPDATE programs_pointslot SET expired = remaining, remaining = 0
    WHERE tenant_id = %(tenant)s AND member_id = ANY(%(ids)s) AND matured AND remaining > 0
      AND ({condition})
    RETURNING member_id, expired
), per_member AS (
    SELECT member_id, sum(expired)::int AS points, count(*) AS lots
    FROM zeroed GROUP BY member_id
), members AS (
    UPDATE programs_member m
    SET points_balance = m.points_balance - p.points, updated_at = %(now)s
    FROM per_member p
    WHERE m.id = p.member_id AND m.tenant_id = %(tenant)s AND m.id = ANY(%(ids)s)
    RETURNING m.id, m.points_balance, p.points, p.lots
), entries AS (
    INSERT INTO programs_pointsentry
        (tenant_id, member_id, kind, points, balance_after, reason, source, source_ref,
         created_at)
    SELECT %(tenant)s, id, 'expire', -points, points_balance,
           {reason}, 'expiry', '', %(now)s
    FROM members
    RETURNING member_id, points
)
INSERT INTO programs_loyaltyevent (tenant_id, kind, member_id, payload, created_at)
SELECT %(tenant)s, 'points_expired', member_id,
       jsonb_build_object('points', -points, 'policy', %(policy)s), %(now)s
FROM entries
"""

_LOT_CONDITION = "expires_at <= %(now)s"
_LOT_REASON = "points::text || ' points expired (earned more than ' || %(days)s || ' days ago)'"
_INACTIVITY_CONDITION = "TRUE"
_INACTIVITY_REASON = (
    "points::text || ' points expired after ' || %(days)s || ' days without activity'"
)

# Credit matured pending lots: one earn entry per lot with a running balance_after.
_MATURE = """
WITH due AS (
    UPDATE programs_pointslot lot SET matured = TRUE
    WHERE lot.tenant_id = %(tenant)s AND lot.member_id = ANY(%(ids)s) AND NOT lot.matured
      AND lot.available_at <= %(now)s
    RETURNING lot.id, lot.member_id, lot.remaining, lot.available_at, lot.expires_at,
              lot.reason, lot.source, lot.order_id
), per_member AS (
    SELECT member_id, sum(remaining)::int AS points FROM due GROUP BY member_id
), members AS (
    UPDATE programs_member m
    SET points_balance = m.points_balance + p.points,
        points_pending = m.points_pending - p.points, updated_at = %(now)s
    FROM per_member p
    WHERE m.id = p.member_id AND m.tenant_id = %(tenant)s AND m.id = ANY(%(ids)s)
    RETURNING m.id, m.points_balance - p.points AS balance_before, p.points
), entries AS (
    INSERT INTO programs_pointsentry
        (tenant_id, member_id, kind, points, balance_after, reason, source, source_ref,
         expires_at, created_at)
    SELECT %(tenant)s, due.member_id, 'earn', due.remaining,
           members.balance_before + sum(due.remaining) OVER (
               PARTITION BY due.member_id ORDER BY due.available_at, due.id),
           due.reason || ' (return window passed)', due.source, coalesce(o.order_id, ''),
           due.expires_at, due.available_at
    FROM due JOIN members ON members.id = due.member_id
    LEFT JOIN programs_order o ON o.id = due.order_id
    WHERE due.remaining > 0
    RETURNING member_id
)
INSERT INTO programs_loyaltyevent (tenant_id, kind, member_id, payload, created_at)
SELECT %(tenant)s, 'points_earned', id,
       jsonb_build_object('points', points, 'source', 'pending'), %(now)s
FROM members WHERE points > 0
"""


# Pay the birthday bonus to the locked members that have not had this year's.
_BIRTHDAY = """
WITH candidates AS (
    SELECT m.id FROM programs_member m
    WHERE m.tenant_id = %(tenant)s AND m.id = ANY(%(ids)s)
      AND NOT EXISTS (SELECT 1 FROM programs_pointsentry e
                      WHERE e.member_id = m.id AND e.bonus_key = %(key)s)
), members AS (
    UPDATE programs_member m
    SET points_balance = m.points_balance + %(points)s,
        lifetime_points = m.lifetime_points + %(points)s,
        last_activity_at = %(now)s, updated_at = %(now)s
    FROM candidates c
    WHERE m.id = c.id AND m.tenant_id = %(tenant)s AND m.id = ANY(%(ids)s)
    RETURNING m.id, m.points_balance
), lots AS (
    INSERT INTO programs_pointslot
        (tenant_id, member_id, points, remaining, expired, earned_at, available_at, matured,
         expires_at, source, reason)
    SELECT %(tenant)s, id, %(points)s, %(points)s, 0, %(now)s, %(now)s, TRUE, %(expires_at)s,
           'bonus', %(reason)s
    FROM members
), entries AS (
    INSERT INTO programs_pointsentry
        (tenant_id, member_id, kind, points, balance_after, reason, source, source_ref,
         bonus_key, expires_at, created_at)
    SELECT %(tenant)s, id, 'earn', %(points)s, points_balance, %(reason)s, 'bonus', %(key)s,
           %(key)s, %(expires_at)s, %(now)s
    FROM members
)
INSERT INTO programs_loyaltyevent (tenant_id, kind, member_id, payload, created_at)
SELECT %(tenant)s, 'points_earned', id,
       jsonb_build_object('points', %(points)s, 'source', 'bonus', 'bonus', %(key)s), %(now)s
FROM members
RETURNING member_id
"""


@dataclass
class SweepResult:
    members: int = 0
    entries: int = 0

    def add(self, members: int, entries: int) -> None:
        self.members += members
        self.entries += entries


def _member_ids(sql: str, params: dict) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _in_batches(tenant: Tenant, ids: list[int], statement: str, params: dict) -> SweepResult:
    result = SweepResult()
    for start in range(0, len(ids), BATCH_MEMBERS):
        batch = {**params, "tenant": tenant.pk, "ids": ids[start : start + BATCH_MEMBERS]}
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_LOCK_MEMBERS, batch)
            locked = cursor.rowcount
            cursor.execute(statement, batch)
            result.add(locked, cursor.rowcount)
    return result


def pending_mature_due(*, tenant: Tenant, now: datetime) -> SweepResult:
    """Move every pending lot whose return window has passed into its member's balance."""
    ids = _member_ids(
        "SELECT DISTINCT member_id FROM programs_pointslot WHERE tenant_id = %(tenant)s "
        "AND NOT matured AND available_at <= %(now)s ORDER BY member_id",
        {"tenant": tenant.pk, "now": now},
    )
    return _in_batches(tenant, ids, _MATURE, {"now": now})


def points_expire_due(*, tenant: Tenant, now: datetime) -> SweepResult:
    """Expire what remains of expired lots (lot policy) or of idle members' balances
    (inactivity policy). Result: members touched, expire entries written."""
    program = program_get(tenant)
    params = {
        "tenant": tenant.pk,
        "now": now,
        "days": program.expiry_days,
        "policy": program.expiry_policy,
    }
    if program.expiry_policy == ExpiryPolicy.LOT:
        ids = _member_ids(
            "SELECT DISTINCT member_id FROM programs_pointslot WHERE tenant_id = %(tenant)s "
            "AND matured AND remaining > 0 AND expires_at <= %(now)s ORDER BY member_id",
            params,
        )
        statement = _EXPIRE.format(condition=_LOT_CONDITION, reason=_LOT_REASON)
    elif program.expiry_policy == ExpiryPolicy.INACTIVITY:
        params["cutoff"] = now - timedelta(days=program.expiry_days)
        ids = _member_ids(
            "SELECT id FROM programs_member WHERE tenant_id = %(tenant)s "
            "AND points_balance > 0 AND last_activity_at <= %(cutoff)s ORDER BY id",
            params,
        )
        statement = _EXPIRE.format(condition=_INACTIVITY_CONDITION, reason=_INACTIVITY_REASON)
    else:
        return SweepResult()
    return _in_batches(tenant, ids, statement, params)


def birthday_bonuses_due(*, tenant: Tenant, now: datetime) -> SweepResult:
    """Pay the birthday bonus to members whose birthday is today in the brand's time zone
    (29 February birthdays on 28 February in other years), once per local year."""
    program = program_get(tenant)
    if program.birthday_bonus <= 0:
        return SweepResult()
    today = now.astimezone(tenant_zone(tenant)).date()
    leap_day_too = (today.month, today.day) == (2, 28) and not calendar.isleap(today.year)
    ids = _member_ids(
        "SELECT id FROM programs_member WHERE tenant_id = %(tenant)s AND ("
        "(birthday_month = %(month)s AND birthday_day = %(day)s) "
        "OR (%(leap)s AND birthday_month = 2 AND birthday_day = 29)) ORDER BY id",
        {"tenant": tenant.pk, "month": today.month, "day": today.day, "leap": leap_day_too},
    )
    params = {
        "now": now,
        "points": program.birthday_bonus,
        "key": f"birthday:{today.year}",
        "reason": BONUS_REASONS[BonusKind.BIRTHDAY],
        "expires_at": lot_expires_at(program, tenant, now),
    }
    result = SweepResult()
    for start in range(0, len(ids), BATCH_MEMBERS):
        batch = {**params, "tenant": tenant.pk, "ids": ids[start : start + BATCH_MEMBERS]}
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_LOCK_MEMBERS, batch)
            cursor.execute(_BIRTHDAY, batch)
            paid = [row[0] for row in cursor.fetchall()]
            result.add(len(batch["ids"]), len(paid))
            # Bonus points count toward points-earned tiers: the few paid today may rise.
            for member_id in paid:
                member = member_lock(Member(pk=member_id))
                tier_upgrade_check(member=member, now=now, reason=params["reason"])
    return result


def tier_reviews_due(*, tenant: Tenant, now: datetime) -> int:
    """Review every member whose tier review date has come (see programs.services.tiers)."""
    changed = 0
    with tenant_scope(tenant):
        due = Member.objects.filter(tier_review_at__lte=now).order_by("id")
        for member_id in due.values_list("id", flat=True).iterator(chunk_size=2000):
            with transaction.atomic():
                member = member_lock(Member(pk=member_id))
                if member.tier_review_at and member.tier_review_at <= now:
                    changed += tier_review(member=member, now=now)
    return changed


def program_sweep(*, tenant: Tenant, now: datetime) -> dict:
    """Everything time moves for one brand, in order: maturing, expiring, tier reviews."""
    with tenant_scope(tenant):
        matured = pending_mature_due(tenant=tenant, now=now)
        expired = points_expire_due(tenant=tenant, now=now)
        birthdays = birthday_bonuses_due(tenant=tenant, now=now)
        reviewed = tier_reviews_due(tenant=tenant, now=now)
    return {
        "matured_entries": matured.entries,
        "expired_members": expired.entries,
        "birthday_bonuses": birthdays.entries,
        "tier_changes": reviewed,
    }
