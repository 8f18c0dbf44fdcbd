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
from loyaltysms.tenancy.context import tenant_scope
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
    event_emit,
    member_lock,
    pending_mature,
    pending_reduce,
    points_credit,
    points_debit,
)
from programs.services.members import member_upsert
from programs.services.program import program_get
from programs.services.tiers import tier_upgrade_check

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
    respond: Callable[[Order], bytes] | None = None,
) -> Recorded:
    """Award an order's points once. `respond(order)` renders the API's answer, stored on the
    order in the same transaction, so a replay returns exactly that body."""
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
        existing_pk = _claim_order(order, member_external_id)
        if existing_pk is not None:
            return Recorded(order=Order.objects.get(pk=existing_pk), created=False)
        program = program_get(tenant)
        if currency != program.currency:  # raising rolls the claim back with the rest
            raise CurrencyMismatch(
                f"The program counts in {program.currency}; this order is in {currency}.",
                errors={"currency": [f"must be {program.currency}"]},
            )
        if order.pk is None:  # a new member: enroll first, then claim the order id
            upserted = member_upsert(tenant=tenant, external_id=member_external_id, now=now)
            order.member_id = upserted.member.pk
            if not insert_unless_exists(order, conflict=("tenant", "order_id")):
                # A concurrent request inserted it first; the insert waited for it to commit.
                return Recorded(order=Order.objects.get(order_id=order_id), created=False)
        member_pk = order.member_id

        member = _lock_with_multiplier(member_pk, placed_at)
        pending_mature(member=member, now=now)
        points = order_points(program, member, subtotal)
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
        if points > 0:
            points_credit(
                member=member,
                program=program,
                points=points,
                reason=f"Order {order_id}",
                source=EntrySource.ORDER,
                now=now,
                source_ref=order_id,
                order=order,
                pending_days=pending,
                save_also=stats,
                write_also=tuple(events),
                update_also=((order, ["points_awarded"]),),
            )
        else:
            write_together(
                inserts=events,
                updates=[(member, [*stats, "last_activity_at"]), (order, ["points_awarded"])],
            )
        tier_upgrade_check(member=member, now=now, reason=f"Order {order_id}")
        order.member = member
        if respond is not None:
            order.response = respond(order)
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE programs_order SET response = %s WHERE id = %s",
                    [order.response, order.pk],
                )
        return Recorded(order=order, created=True)


_CLAIM_ORDER = """
WITH member AS (
    SELECT id FROM programs_member WHERE tenant_id = %(tenant)s AND external_id = %(member)s
), claimed AS (
    INSERT INTO programs_order
        (tenant_id, order_id, member_id, subtotal, currency, placed_at, points_awarded,
         refunded_amount, points_reversed, created_at)
    SELECT %(tenant)s, %(order_id)s, member.id, %(subtotal)s, %(currency)s, %(placed_at)s, 0,
           0, 0, %(created_at)s
    FROM member
    ON CONFLICT (tenant_id, order_id) DO NOTHING
    RETURNING id, member_id
)
SELECT (SELECT id FROM claimed), (SELECT member_id FROM claimed), (SELECT id FROM member),
       (SELECT id FROM programs_order WHERE tenant_id = %(tenant)s AND order_id = %(order_id)s)
"""


def _claim_order(order: Order, member_external_id: str) -> int | None:
    """Insert the order for a known member in one round trip.

    Returns the id of an order already recorded under this order_id (a replay), else None:
    then order.pk is set when it was inserted, or left None when the member is new.
    """
    params = {
        "tenant": order.tenant_id,
        "member": member_external_id,
        "order_id": order.order_id,
        "subtotal": order.subtotal,
        "currency": order.currency,
        "placed_at": order.placed_at,
        "created_at": order.created_at,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_ORDER, params)
        claimed_pk, member_pk, known_member_pk, existing_pk = cursor.fetchone()
        if claimed_pk is not None:
            order.pk, order.member_id = claimed_pk, member_pk
            order._state.adding = False
            return None
        if existing_pk is None and known_member_pk is not None:
            # The insert waited for a concurrent one that committed after this statement's
            # snapshot was taken: look again.
            cursor.execute(
                "SELECT id FROM programs_order WHERE tenant_id = %s AND order_id = %s",
                [order.tenant_id, order.order_id],
            )
            existing_pk = cursor.fetchone()[0]
    return existing_pk


def _lock_with_multiplier(member_pk: int, placed_at: datetime) -> Member:
    """member_lock(), also fetching the best multiplier event for the member's tier."""
    best_event = (
        ", (SELECT max(e.multiplier) FROM programs_multiplierevent e"
        " WHERE e.tenant_id = programs_member.tenant_id AND e.starts_at <= %s AND e.ends_at > %s"
        " AND (e.tier_id IS NULL OR e.tier_id = programs_member.tier_id)) AS event_multiplier"
    )
    return member_lock(Member(pk=member_pk), extra=best_event, params=(placed_at, placed_at))


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
    lot = PointsLot.objects.filter(order=order).first()
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


def get_order(tenant: Tenant, order_id: str) -> Order | None:
    with tenant_scope(tenant):
        return Order.objects.filter(order_id=order_id).select_related("member").first()
