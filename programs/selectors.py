"""Reads of the loyalty engine that more than one caller needs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet, Sum
from django.http import Http404

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import (
    ExpiryPolicy,
    Member,
    MemberImport,
    MultiplierEvent,
    Order,
    PointsEntry,
    PointsLot,
    Program,
    Redemption,
    Reward,
    Tier,
    TierChange,
)
from programs.services.program import program_get
from programs.services.tiers import (
    next_tier_progress,
    period_start,
    qualifying_values,
    tier_ladder,
)

EXPIRING_SHOWN = 5


def _get(queryset: QuerySet, what: str, **lookup):
    """The same 404 for "missing" and "another brand's" (the queryset is tenant-scoped)."""
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj


def get_member(tenant: Tenant, external_id: str) -> Member:
    with tenant_scope(tenant):
        return _get(Member.objects.select_related("tier"), "member", external_id=external_id)


def get_member_by_id(tenant: Tenant, member_id: int) -> Member:
    with tenant_scope(tenant):
        return _get(Member.objects.select_related("tier"), "member", pk=member_id)


def get_order(tenant: Tenant, order_id: str) -> Order:
    with tenant_scope(tenant):
        return _get(Order.objects.select_related("member"), "order", order_id=order_id)


def get_reward(tenant: Tenant, reward_id: int) -> Reward:
    with tenant_scope(tenant):
        return _get(Reward.objects.all(), "reward", pk=reward_id)


def get_tier(tenant: Tenant, tier_id: int) -> Tier:
    with tenant_scope(tenant):
        return _get(Tier.objects.all(), "tier", pk=tier_id)


def get_redemption(tenant: Tenant, redemption_id: int) -> Redemption:
    with tenant_scope(tenant):
        return _get(
            Redemption.objects.select_related("member", "reward"), "redemption", pk=redemption_id
        )


def get_member_import(tenant: Tenant, import_id: int) -> MemberImport:
    with tenant_scope(tenant):
        return _get(MemberImport.objects.all(), "import", pk=import_id)


def get_multiplier_event(tenant: Tenant, event_id: int) -> MultiplierEvent:
    with tenant_scope(tenant):
        return _get(MultiplierEvent.objects.all(), "multiplier event", pk=event_id)


def order_is_pending(order: Order, program: Program) -> bool:
    """Whether a just-recorded order's points wait out the return window."""
    return order.points_awarded > 0 and program.pending_days > 0


def member_search(
    queryset: QuerySet, *, q: str = "", phone: str = "", email: str = "", tier_id: int | None = None
) -> QuerySet:
    """Narrow members by any of: free text (name, email, phone, external id), exact phone
    (E.164), exact email, tier."""
    if phone:
        queryset = queryset.filter(phone=phone)
    if email:
        queryset = queryset.filter(email__iexact=email)
    if tier_id is not None:
        queryset = queryset.filter(tier_id=tier_id)
    for word in q.split()[:5]:
        digits = "".join(ch for ch in word if ch.isdigit())
        match = (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(email__icontains=word)
            | Q(external_id=word)
        )
        if len(digits) >= 4:
            match |= Q(phone__contains=digits)
        queryset = queryset.filter(match)
    return queryset


def ledger_for(member: Member) -> QuerySet:
    return PointsEntry.objects.filter(member=member).select_related("actor")


def tier_history(member: Member) -> QuerySet:
    return TierChange.objects.filter(member=member).select_related("from_tier", "to_tier")


@dataclass(frozen=True)
class MemberContext:
    """What a Member body needs beyond the row, loaded for a whole page in a few queries."""

    program: Program
    ladder: list[Tier]
    qualifying: dict[int, object]
    expiring: dict[int, list[dict]]


def member_context(
    tenant: Tenant,
    members: Sequence[Member],
    now: datetime,
    *,
    qualifying: dict | None = None,
    unsaved_lots: Sequence[PointsLot] = (),
) -> MemberContext:
    """What Member bodies need, for a page of members in a few queries. A caller answering
    before its own writes passes what the database doesn't hold yet: the members' qualifying
    values and the lots being opened."""
    with tenant_scope(tenant):
        program = program_get(tenant)
        ladder = tier_ladder()
        if qualifying is None:
            qualifying = {}
            if ladder:
                start = period_start(ladder[0], tenant, now)
                qualifying = qualifying_values(members, ladder[0], start=start, end=now)
        return MemberContext(
            program=program,
            ladder=ladder,
            qualifying=qualifying,
            expiring=_expiring(program, members, unsaved_lots),
        )


def _expiring(
    program: Program, members: Sequence[Member], unsaved_lots: Sequence[PointsLot]
) -> dict[int, list[dict]]:
    result: dict[int, list[dict]] = defaultdict(list)
    if program.expiry_policy == ExpiryPolicy.INACTIVITY:
        for member in members:
            if member.points_balance > 0:
                when = member.last_activity_at + timedelta(days=program.expiry_days)
                result[member.pk].append({"points": member.points_balance, "expires_at": when})
    elif program.expiry_policy == ExpiryPolicy.LOT:
        rows = (
            PointsLot.objects.filter(
                member__in=[m.pk for m in members],
                matured=True,
                remaining__gt=0,
                expires_at__isnull=False,
            )
            .values("member_id", "expires_at")
            .annotate(points=Sum("remaining"))
            .order_by("member_id", "expires_at")
        )
        sums: dict[tuple[int, datetime], int] = defaultdict(int)
        for row in rows:
            sums[row["member_id"], row["expires_at"]] += row["points"]
        for lot in unsaved_lots:
            if lot.matured and lot.remaining > 0 and lot.expires_at is not None:
                sums[lot.member_id, lot.expires_at] += lot.remaining
        for member_id, expires_at in sorted(sums):
            if len(result[member_id]) < EXPIRING_SHOWN:
                result[member_id].append(
                    {"points": sums[member_id, expires_at], "expires_at": expires_at}
                )
    return result


def next_tier_for(member: Member, context: MemberContext) -> dict | None:
    return next_tier_progress(member, context.ladder, context.qualifying.get(member.pk))


def program_rewards(*, active_only: bool = False) -> QuerySet:
    rewards = Reward.objects.all()
    return rewards.filter(active=True) if active_only else rewards


def personalization(tenant: Tenant, members: Sequence[Member], now: datetime) -> dict[int, dict]:
    """What a text may say about each member (the messaging app's one window into loyalty
    data): member id → {first_name, points_balance, points_name, vip_tier, tier_perks,
    next_tier, points_to_next_tier, points_expiring, points_expiring_date}. A few queries per call,
    whatever the number of members."""
    if not members:
        return {}
    context = member_context(tenant, members, now)
    values = {}
    for member in members:
        progress = next_tier_for(member, context)
        expiring = context.expiring.get(member.pk) or []
        expires_local = (
            expiring[0]["expires_at"].astimezone(ZoneInfo(member.timezone or tenant.timezone))
            if expiring
            else None
        )
        values[member.pk] = {
            "first_name": member.first_name,
            "last_name": member.last_name,
            "points_balance": f"{member.points_balance:,}",
            "points_name": context.program.points_name,
            "vip_tier": member.tier.name if member.tier_id else "",
            "tier_perks": member.tier.perks.strip() if member.tier_id else "",
            "next_tier": progress["name"] if progress else "",
            "points_to_next_tier": (
                f"{progress['points_needed']:,}"
                if progress and progress["points_needed"] is not None
                else ""
            ),
            "points_expiring": f"{expiring[0]['points']:,}" if expiring else "",
            "points_expiring_date": (
                f"{expires_local:%b} {expires_local.day}" if expires_local else ""
            ),
        }
    return values
