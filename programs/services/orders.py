"""Orders earn points; refunds take them back in proportion.

Exactly once: an order_id (and a refund_id) is unique per brand. A retry, even one racing the
first request, finds the first row and gets its stored response; it never awards again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.db import connection, transaction

from loyaltysms.db import insert_unless_exists, write_together
from loyaltysms.models import Tenant
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import require_tenant, tenant_scope
from programs.models import (
    EntryKind,
    EntrySource,
    EventKind,
    LoyaltyEvent,
    Member,
    Order,
    PointsLot,
    Program,
    Refund,
    Rounding,
)
from programs.services.ledger import (
    CREDIT_FIELDS,
    MEMBER_COLUMNS,
    credit_plan,
    event_emit,
    locked_member,
    member_lock,
    pending_mature,
    pending_reduce,
    points_debit,
)
from programs.services.members import member_upsert
from programs.services.program import program_get
from programs.services.tiers import period_start, tier_ladder, tier_upgrade_before_write

ROUNDING_MODES = {
    Rounding.FLOOR: ROUND_FLOOR,
    Rounding.NEAREST: ROUND_HALF_UP,
    Rounding.CEIL: ROUND_CEILING,
}


def order_multiplier(member: Member) -> Decimal:
    """The tier's perk times the best multiplier event running when the order was placed
    (fetched with the member's row lock as `event_multiplier`)."""
    tier_multiplier = member.tier.earn_multiplier if member.tier_id else Decimal(1)
    return tier_multiplier * (member.event_multiplier or Decimal(1))


def order_points(program: Program, member: Member, subtotal: Decimal) -> int:
    raw = subtotal * program.earn_rate * order_multiplier(member)
    return int(raw.to_integral_value(rounding=ROUNDING_MODES[Rounding(program.rounding)]))


class CurrencyMismatch(ProblemError):
    code = "currency-mismatch"


class TooManyPoints(ProblemError):
    code = "too-many-points"


# Points columns are 32-bit and lifetime spend is numeric(14, 2): no member may be taken past
# them, whatever an order says.
POINTS_CEILING = 2**31 - 1
SPEND_CEILING = Decimal("999999999999.99")


@dataclass(frozen=True)
class Recorded:
    order: Order
    created: bool


@transaction.atomic
def order_record(
    *,
    tenant: Tenant,
    order_id: str,
    member_external_id: str,
    subtotal: Decimal,
    currency: str,
    now: datetime,
    placed_at: datetime | None = None,
    respond: Callable[[Order, Decimal | None, PointsLot | None], bytes] | None = None,
) -> Recorded:
    """Award an order's points once.

    `respond(order, qualifying_value, new_lot)` renders the API's answer before anything is
    written (it gets what the database doesn't hold yet: the member's qualifying value with
    this order, and the new lot), so the order, its points, its events, a tier change and the
    stored answer all go in one statement; a replay returns exactly that body."""
    with tenant_scope(tenant):
        placed_at = placed_at or now
        order = Order(
            tenant=tenant,
            order_id=order_id,
            subtotal=subtotal,
            currency=currency,
            placed_at=placed_at,
            created_at=now,
        )
        claim = _claim_order(order, member_external_id)
        if claim.existing_order_pk is not None:
            return Recorded(order=Order.objects.get(pk=claim.existing_order_pk), created=False)
        program = program_get(tenant)
        if currency != program.currency:  # raising rolls the claim back with the rest
            raise CurrencyMismatch(
                f"The program counts in {program.currency}; this order is in {currency}.",
                errors={"currency": [f"must be {program.currency}"]},
            )
        member = claim.member
        if member is None:  # a new member: enroll, then claim the order id
            upserted = member_upsert(tenant=tenant, external_id=member_external_id, now=now)
            order.member_id = upserted.member.pk
            if not insert_unless_exists(order, conflict=("tenant", "order_id")):
                # A concurrent request inserted it first; the insert waited for it to commit.
                return Recorded(order=Order.objects.get(order_id=order_id), created=False)
            member = member_lock(upserted.member)
            member.event_multiplier = _best_event_multiplier(member, placed_at)

        pending_mature(member=member, now=now)
        points = order_points(program, member, subtotal)
        if (
            max(member.lifetime_points, member.points_balance + member.points_pending) + points
            > POINTS_CEILING
            or member.lifetime_spend + subtotal > SPEND_CEILING
        ):
            raise TooManyPoints(
                f"This order would award {points:,} points, more than a member's account can "
                "hold; check the subtotal and the earn rate.",
                errors={"subtotal": ["too large for the program's earn rate"]},
            )
        pending = program.pending_days
        stats = ("orders_count", "lifetime_spend", "lifetime_points", "last_order_at")
        member.orders_count += 1
        member.lifetime_spend += subtotal
        member.lifetime_points += points
        member.last_order_at = max(member.last_order_at or placed_at, placed_at)
        member.last_activity_at = now
        order.points_awarded = points  # tier rules and the answer read it from the row
        events = [
            LoyaltyEvent(
                tenant=tenant,
                member=member,
                kind=EventKind.ORDER_PLACED,
                created_at=now,
                payload={
                    "order_id": order_id,
                    "subtotal": str(subtotal),
                    "currency": currency,
                    "points": points,
                    "pending": bool(pending and points),
                },
            )
        ]
        if points > 0 and not pending:
            events.append(
                LoyaltyEvent(
                    tenant=tenant,
                    member=member,
                    kind=EventKind.POINTS_EARNED,
                    created_at=now,
                    payload={"points": points, "source": "order", "order_id": order_id},
                )
            )
        credit = None
        if points > 0:
            credit = credit_plan(
                member=member,
                program=program,
                points=points,
                reason=f"Order {order_id}",
                source=EntrySource.ORDER,
                now=now,
                source_ref=order_id,
                order=order,
                pending_days=pending,
            )
        tier_rows, value = _tier_upgrade(member, order, now)
        order.member = member
        order.response = respond(order, value, credit.lot if credit else None) if respond else None
        write_together(
            inserts=[*(credit.rows if credit else ()), *events, *tier_rows],
            updates=[
                (member, [*CREDIT_FIELDS, *stats, "tier", "tier_review_at"]),
                (order, ["points_awarded", "response"]),
            ],
        )
        return Recorded(order=order, created=True)


_BEST_EVENT = (
    "(SELECT max(e.multiplier) FROM programs_multiplierevent e"
    " WHERE e.tenant_id = programs_member.tenant_id"
    " AND e.starts_at <= %(placed_at)s AND e.ends_at > %(placed_at)s"
    " AND (e.tier_id IS NULL OR e.tier_id = programs_member.tier_id))"
)

# Insert the order for a known member and lock that member, in one round trip. The order row
# goes in first (a racing duplicate waits on it and gets nothing back, holding no lock), then
# the member is locked: the same order as every other ledger write.
_CLAIM_ORDER = f"""
WITH claimed AS (
    INSERT INTO programs_order
        (tenant_id, order_id, member_id, subtotal, currency, placed_at, points_awarded,
         refunded_amount, points_reversed, created_at)
    SELECT %(tenant)s, %(order_id)s, m.id, %(subtotal)s, %(currency)s, %(placed_at)s, 0, 0, 0,
           %(created_at)s
    FROM programs_member m WHERE m.tenant_id = %(tenant)s AND m.external_id = %(member)s
    ON CONFLICT (tenant_id, order_id) DO NOTHING
    RETURNING id, member_id
)
SELECT {MEMBER_COLUMNS}, claimed.id AS claimed_order_id, {_BEST_EVENT} AS event_multiplier
FROM programs_member JOIN claimed ON programs_member.id = claimed.member_id
FOR UPDATE OF programs_member
"""

_FIND = (
    "SELECT (SELECT id FROM programs_order WHERE tenant_id = %(tenant)s"
    " AND order_id = %(order_id)s),"
    " (SELECT id FROM programs_member WHERE tenant_id = %(tenant)s AND external_id = %(member)s)"
)


@dataclass(frozen=True)
class Claim:
    member: Member | None  # locked, when the order was inserted
    existing_order_pk: int | None  # the order recorded before under this order_id


def _tier_upgrade(member: Member, order: Order, now: datetime) -> tuple[list, Decimal | None]:
    """The tier move this order causes; its row is in (spend counts), its points are not."""
    ladder = tier_ladder()
    start = period_start(ladder[0], member.tenant, now) if ladder else None
    counted = (start is None or order.placed_at >= start) and order.placed_at <= now
    return tier_upgrade_before_write(
        member=member,
        now=now,
        reason=f"Order {order.order_id}",
        unsaved_points=order.points_awarded if counted else 0,
    )


def _claim_order(order: Order, member_external_id: str) -> Claim:
    tenant = require_tenant("order claim")
    params = {
        "tenant": order.tenant_id,
        "member": member_external_id,
        "order_id": order.order_id,
        "subtotal": order.subtotal,
        "currency": order.currency,
        "placed_at": order.placed_at,
        "created_at": order.created_at,
    }
    rows = list(Member.objects.raw(_CLAIM_ORDER, params))
    if rows:
        member = locked_member(rows[0], tenant)
        order.pk, order.member_id = member.claimed_order_id, member.pk
        order._state.adding = False
        return Claim(member=member, existing_order_pk=None)
    # Nothing inserted: a replay (maybe of a request that committed a moment ago, which the
    # insert waited for), or a member we don't know yet.
    with connection.cursor() as cursor:
        cursor.execute(_FIND, params)
        existing_pk, _ = cursor.fetchone()
    return Claim(member=None, existing_order_pk=existing_pk)


def _best_event_multiplier(member: Member, placed_at: datetime) -> Decimal | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_BEST_EVENT} FROM programs_member WHERE id = %(member)s",
            {"member": member.pk, "placed_at": placed_at},
        )
        return cursor.fetchone()[0]


class RefundTooLarge(ProblemError):
    code = "refund-exceeds-order"


class RefundIdTaken(ProblemError):
    code = "refund-id-taken"


@dataclass(frozen=True)
class RefundRecorded:
    refund: Refund
    created: bool


def clawback_target(order: Order, refunded_total: Decimal) -> int:
    """Points all refunds so far should have taken back: the refunded share, rounded half up."""
    if order.subtotal == 0:
        return 0
    share = Decimal(order.points_awarded) * refunded_total / order.subtotal
    return int(share.to_integral_value(rounding=ROUND_HALF_UP))


@transaction.atomic
def refund_record(
    *, order: Order, refund_id: str, amount: Decimal, now: datetime
) -> RefundRecorded:
    """Take back the refunded share of the order's points, never below zero.

    From the order's own lot first (while it is pending, from the pending points), then from
    the balance, soonest-expiring first; what the balance can't cover is recorded on the refund
    as points_unrecovered.
    """
    member = member_lock(order.member)
    existing = Refund.objects.filter(refund_id=refund_id).select_related("order").first()
    if existing is not None:
        if existing.order_id != order.pk:
            raise RefundIdTaken(
                f"Refund {refund_id} belongs to order {existing.order.order_id}.",
                errors={"refund_id": ["already used for another order"]},
            )
        return RefundRecorded(refund=existing, created=False)
    order = Order.objects.select_for_update().get(pk=order.pk)
    left = order.subtotal - order.refunded_amount
    if amount > left:
        raise RefundTooLarge(
            f"The order's subtotal is {order.subtotal} and {order.refunded_amount} is refunded "
            f"already; at most {left} can be refunded.",
            errors={"amount": [f"at most {left}"]},
        )
    pending_mature(member=member, now=now)
    refunded_total = order.refunded_amount + amount
    to_reverse = clawback_target(order, refunded_total) - order.points_reversed
    reason = f"Refund {refund_id} of order {order.order_id}"
    taken = 0
    # Only a lot with points left matters; this also keeps the lookup on an index.
    lot = PointsLot.objects.filter(member_id=order.member_id, order=order, remaining__gt=0).first()
    if to_reverse and lot is not None and not lot.matured:
        taken = pending_reduce(member=member, lot=lot, points=to_reverse)
    if to_reverse - taken > 0:
        entry = points_debit(
            member=member,
            points=to_reverse - taken,
            kind=EntryKind.REVERSE,
            reason=reason,
            source=EntrySource.REFUND,
            now=now,
            source_ref=refund_id,
            partial=True,
            first_lot=lot if lot is not None and lot.matured else None,
        )
        taken += -entry.points if entry else 0
    refund = Refund.objects.create(
        order=order,
        refund_id=refund_id,
        amount=amount,
        points_reversed=taken,
        points_unrecovered=to_reverse - taken,
        created_at=now,
    )
    order.refunded_amount = refunded_total
    order.points_reversed += to_reverse
    order.save(update_fields=["refunded_amount", "points_reversed"])
    member.lifetime_spend -= amount
    member.lifetime_points -= to_reverse
    member.save(update_fields=["lifetime_spend", "lifetime_points", "updated_at"])
    event_emit(
        member,
        EventKind.ORDER_REFUNDED,
        now,
        order_id=order.order_id,
        refund_id=refund_id,
        amount=str(amount),
        points_reversed=taken,
        points_unrecovered=to_reverse - taken,
    )
    refund.order = order
    return RefundRecorded(refund=refund, created=True)


def refund_store_response(*, refund: Refund, body: bytes) -> None:
    refund.response = body
    refund.save(update_fields=["response"])
