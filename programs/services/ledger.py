"""The points ledger: the only code that moves points.

Rules it enforces:
- Every movement is a PointsEntry with a reason, a source and the balance after it.
- All movements of one member are serialized by a lock on the member's row (SELECT … FOR
  UPDATE), taken first by every caller; database constraints (balance ≥ 0, lot remaining ≥ 0)
  stand behind it, so no interleaving can overdraw.
- Spending takes the lots that expire first (never-expiring ones last, then oldest first).
- A pending lot (inside an order's return window) is outside the balance until it matures.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import F

from loyaltysms.db import write_together
from loyaltysms.models import Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import require_tenant
from programs.models import (
    EntryKind,
    EntrySource,
    EventKind,
    ExpiryPolicy,
    LotDebit,
    LoyaltyEvent,
    Member,
    Order,
    PointsEntry,
    PointsLot,
    Program,
)
from programs.services.program import tier_ladder_get


class InsufficientPoints(ProblemError):
    status_code = 409
    code = "insufficient-points"


def tenant_zone(tenant: Tenant) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tenant.timezone)


def local_midnight(tenant: Tenant, day: date) -> datetime:
    """The instant a local calendar day starts in the brand's time zone."""
    return datetime.combine(day, time.min, tzinfo=tenant_zone(tenant))


def lot_expires_at(program: Program, tenant: Tenant, available_at: datetime) -> datetime | None:
    """A lot earned (or matured) on local day D expires at the end of local day D + N."""
    if program.expiry_policy != ExpiryPolicy.LOT:
        return None
    local_day = available_at.astimezone(tenant_zone(tenant)).date()
    return local_midnight(tenant, local_day + timedelta(days=program.expiry_days + 1))


MEMBER_COLUMNS = ", ".join(f"programs_member.{f.column}" for f in Member._meta.concrete_fields)
_LOCK_MEMBER = (
    f"SELECT {MEMBER_COLUMNS} FROM programs_member WHERE id = %s AND tenant_id = %s FOR UPDATE"  # noqa: S608
)


def member_lock(member: Member) -> Member:
    """Lock the member's row for the rest of the transaction and return it fresh.

    Every ledger change calls this first, so it is one plain statement.
    """
    tenant = require_tenant("member_lock")
    rows = list(Member.objects.raw(_LOCK_MEMBER, [member.pk, tenant.pk]))
    if not rows:
        raise Member.DoesNotExist(f"member {member.pk}")
    return locked_member(rows[0], tenant)


def locked_member(row: Member, tenant: Tenant) -> Member:
    """A member row read FOR UPDATE by raw SQL, with its tenant and tier attached."""
    row.tenant = tenant  # the query was scoped to it
    if row.tier_id is not None:
        tiers = {tier.pk: tier for tier in tier_ladder_get(tenant)}
        if row.tier_id in tiers:
            row.tier = tiers[row.tier_id]
    return row


def event_emit(member: Member | None, kind: EventKind, now: datetime, **payload) -> LoyaltyEvent:
    return LoyaltyEvent.objects.create(member=member, kind=kind, payload=payload, created_at=now)


def _new_entry(
    member: Member,
    *,
    kind: EntryKind,
    points: int,
    reason: str,
    source: EntrySource,
    now: datetime,
    source_ref: str = "",
    actor: User | None = None,
    bonus_key: str | None = None,
    expires_at: datetime | None = None,
) -> PointsEntry:
    """The entry for a movement of a locked member's balance (moved here), not saved yet."""
    member.points_balance += points
    return PointsEntry(
        tenant_id=member.tenant_id,
        member=member,
        kind=kind,
        points=points,
        balance_after=member.points_balance,
        reason=reason[:300],
        source=source,
        source_ref=source_ref,
        actor=actor,
        bonus_key=bonus_key,
        expires_at=expires_at,
        created_at=now,
    )


def _entry(member: Member, **fields) -> PointsEntry:
    entry = _new_entry(member, **fields)
    entry.save()
    return entry


def _save_points(member: Member, *extra_fields: str) -> None:
    member.save(update_fields=["points_balance", "points_pending", *extra_fields, "updated_at"])


@dataclass(frozen=True)
class Credit:
    lot: PointsLot
    entry: PointsEntry | None  # None while the lot is pending

    @property
    def rows(self) -> list:
        return [self.lot, *([self.entry] if self.entry else [])]


def points_credit(*, save_also: tuple[str, ...] = (), **plan) -> Credit:
    """Open a lot of `points` for a locked member (see credit_plan) and write it, its earn
    entry and the member's new balance in one statement."""
    credit = credit_plan(**plan)
    member = plan["member"]
    write_together(inserts=credit.rows, updates=[(member, [*CREDIT_FIELDS, *save_also])])
    return credit


CREDIT_FIELDS = ("points_balance", "points_pending", "last_activity_at")


def credit_plan(
    *,
    member: Member,
    program: Program,
    points: int,
    reason: str,
    source: EntrySource,
    now: datetime,
    kind: EntryKind = EntryKind.EARN,
    source_ref: str = "",
    actor: User | None = None,
    bonus_key: str | None = None,
    order: Order | None = None,
    pending_days: int = 0,
) -> Credit:
    """A lot of `points` for a locked member, and its earn entry, not written yet; the
    member's balance (or, with pending_days, its pending points) moved in memory. The caller
    writes them with the member's CREDIT_FIELDS."""
    assert points > 0
    available_at = now + timedelta(days=pending_days)
    expires_at = lot_expires_at(program, member.tenant, available_at)
    pending = pending_days > 0
    lot = PointsLot(
        tenant_id=member.tenant_id,
        member=member,
        points=points,
        remaining=points,
        earned_at=now,
        available_at=available_at,
        matured=not pending,
        expires_at=expires_at,
        order=order,
        source=source,
        reason=reason[:300],
    )
    entry = None
    if pending:
        member.points_pending += points
    else:
        entry = _new_entry(
            member,
            kind=kind,
            points=points,
            reason=reason,
            source=source,
            now=now,
            source_ref=source_ref,
            actor=actor,
            bonus_key=bonus_key,
            expires_at=expires_at,
        )
    member.last_activity_at = now
    return Credit(lot=lot, entry=entry)


def _open_lots(member: Member, *, first: PointsLot | None = None) -> list[PointsLot]:
    lots = list(
        PointsLot.objects.select_for_update()
        .filter(member=member, matured=True, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )
    if first is not None:
        lots.sort(key=lambda lot: lot.pk != first.pk)  # stable: the rest keep their order
    return lots


def points_debit(
    *,
    member: Member,
    points: int,
    kind: EntryKind,
    reason: str,
    source: EntrySource,
    now: datetime,
    source_ref: str = "",
    actor: User | None = None,
    partial: bool = False,
    first_lot: PointsLot | None = None,
) -> PointsEntry | None:
    """Take `points` from a locked member, from the lots that expire first.

    Without `partial`, too few points raise InsufficientPoints and nothing changes; with it,
    what the balance holds is taken (a refund's clawback) and None is returned for nothing.
    """
    assert points > 0
    if points > member.points_balance:
        if not partial:
            raise InsufficientPoints(
                f"{points} points needed, the member has {member.points_balance}."
            )
        points = member.points_balance
        if points == 0:
            return None
    entry = _entry(
        member,
        kind=kind,
        points=-points,
        reason=reason,
        source=source,
        now=now,
        source_ref=source_ref,
        actor=actor,
    )
    debits, left = [], points
    for lot in _open_lots(member, first=first_lot):
        take = min(lot.remaining, left)
        lot.remaining -= take
        debits.append(LotDebit(tenant_id=member.tenant_id, entry=entry, lot=lot, points=take))
        left -= take
        if left == 0:
            break
    if left:  # the balance said yes but the lots disagree: never silently overdraw
        raise RuntimeError(f"ledger out of balance for member {member.pk}: {left} points short")
    PointsLot.objects.bulk_update([d.lot for d in debits], ["remaining"])
    LotDebit.objects.bulk_create(debits)
    member.last_activity_at = now
    _save_points(member, "last_activity_at")
    return entry


def points_restore(
    *,
    member: Member,
    program: Program,
    debit_entry: PointsEntry,
    reason: str,
    source: EntrySource,
    now: datetime,
    source_ref: str = "",
    actor: User | None = None,
) -> PointsEntry:
    """Give back what a debit took, to the lots it took from; an expired lot's share comes
    back as a fresh lot with a new expiry (points returned should be spendable)."""
    debits = list(LotDebit.objects.filter(entry=debit_entry).select_related("lot"))
    total = sum(d.points for d in debits)
    fresh = 0
    for debit in debits:
        lot = debit.lot
        if lot.expires_at is not None and lot.expires_at <= now:
            fresh += debit.points
        else:
            PointsLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") + debit.points)
    expires_at = lot_expires_at(program, member.tenant, now) if fresh else None
    if fresh:
        PointsLot.objects.create(
            member=member,
            points=fresh,
            remaining=fresh,
            earned_at=now,
            available_at=now,
            expires_at=expires_at,
            source=source,
            reason=reason[:300],
        )
    entry = _entry(
        member,
        kind=EntryKind.REVERSE,
        points=total,
        reason=reason,
        source=source,
        now=now,
        source_ref=source_ref,
        actor=actor,
        expires_at=expires_at,
    )
    _save_points(member)
    return entry


def pending_mature(*, member: Member, now: datetime) -> int:
    """Credit a locked member's pending lots whose return window has passed."""
    if member.points_pending == 0:
        return 0
    lots = list(
        PointsLot.objects.filter(member=member, matured=False, available_at__lte=now).order_by(
            "available_at", "id"
        )
    )
    credited = 0
    for lot in lots:
        member.points_pending -= lot.remaining
        if lot.remaining:
            _entry(
                member,
                kind=EntryKind.EARN,
                points=lot.remaining,
                reason=f"{lot.reason} (return window passed)",
                source=lot.source,
                now=lot.available_at,
                source_ref=lot.order.order_id if lot.order_id else "",
                expires_at=lot.expires_at,
            )
            credited += lot.remaining
    if lots:
        PointsLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(matured=True)
        _save_points(member)
        if credited:
            event_emit(member, EventKind.POINTS_EARNED, now, points=credited, source="pending")
    return credited


def pending_reduce(*, member: Member, lot: PointsLot, points: int) -> int:
    """Take back up to `points` from a locked member's pending lot (a refund inside the window)."""
    take = min(points, lot.remaining)
    if take:
        PointsLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
        lot.remaining -= take
        member.points_pending -= take
        _save_points(member)
    return take
