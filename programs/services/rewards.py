"""Redemptions: points for a reward code; the code is used once or cancelled for the points."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import IntegrityError, transaction

from loyaltysms.models import User
from loyaltysms.problems import ProblemError
from programs.models import (
    EntryKind,
    EntrySource,
    EventKind,
    Member,
    Redemption,
    RedemptionStatus,
    Reward,
)
from programs.services.ledger import (
    event_emit,
    member_lock,
    pending_mature,
    points_debit,
    points_restore,
)
from programs.services.program import program_get

# No 0/O or 1/I/L: codes get read aloud and typed from texts.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def redemption_code() -> str:
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"LS-{body[:5]}-{body[5:]}"


class RewardUnavailable(ProblemError):
    code = "reward-unavailable"


class RedemptionState(ProblemError):
    status_code = 409
    code = "redemption-state"


def _issue(member: Member, reward: Reward, now: datetime, **fields) -> Redemption:
    for _attempt in range(5):
        try:
            with transaction.atomic():
                return Redemption.objects.create(
                    member=member, reward=reward, code=redemption_code(), created_at=now, **fields
                )
        except IntegrityError:  # a code collision (31^10 codes): draw again
            continue
    raise RuntimeError("could not draw a unique redemption code")


@transaction.atomic
def redemption_create(*, member: Member, reward: Reward, now: datetime) -> Redemption:
    """Spend the reward's cost (409 when the balance is short) and issue a unique code."""
    if not reward.active:
        raise RewardUnavailable(f"The reward {reward.name!r} is not offered any more.")
    member = member_lock(member)
    pending_mature(member=member, now=now)
    entry = points_debit(
        member=member,
        points=reward.points_cost,
        kind=EntryKind.REDEEM,
        reason=f"Redeemed {reward.name}",
        source=EntrySource.REDEMPTION,
        now=now,
        source_ref=str(reward.pk),
    )
    redemption = _issue(member, reward, now, points_spent=reward.points_cost, entry=entry)
    event_emit(
        member, EventKind.POINTS_REDEEMED, now, points=reward.points_cost, reward_id=reward.pk
    )
    event_emit(
        member,
        EventKind.REWARD_REDEEMED,
        now,
        reward_id=reward.pk,
        reward=reward.name,
        redemption_id=redemption.pk,
        code=redemption.code,
    )
    redemption.member = member
    return redemption


@transaction.atomic
def reward_gift(*, member: Member, reward: Reward, key: str, now: datetime) -> Redemption:
    """A reward code given for nothing spent (a flow's birthday reward), once per `key`
    (≤ 64 characters, unique per brand): asked again, the code issued the first time."""
    member = member_lock(member)
    found = Redemption.objects.filter(gift_key=key).first()
    if found is not None:
        return found
    if not reward.active:
        raise RewardUnavailable(f"The reward {reward.name!r} is not offered any more.")
    # No reward_redeemed event: the member redeemed nothing (and a flow reacting to
    # redemptions must not be started by a flow's own gift).
    return _issue(member, reward, now, points_spent=0, entry=None, gift_key=key)


@transaction.atomic
def redemption_use(*, redemption: Redemption, now: datetime, order_id: str = "") -> Redemption:
    """The storefront applied the code. Using it again is harmless; a cancelled code is 409."""
    redemption = Redemption.objects.select_for_update().get(pk=redemption.pk)
    if redemption.status == RedemptionStatus.CANCELLED:
        raise RedemptionState(f"Code {redemption.code} was cancelled; its points were returned.")
    if redemption.status == RedemptionStatus.ISSUED:
        redemption.status = RedemptionStatus.USED
        redemption.used_at = now
        redemption.save(update_fields=["status", "used_at"])
    return redemption


@transaction.atomic
def redemption_cancel(
    *, redemption: Redemption, now: datetime, reason: str = "", actor: User | None = None
) -> Redemption:
    """Return the points (cancelled before use, or the order it paid for was refunded).
    Cancelling twice returns them once."""
    member = member_lock(redemption.member)
    redemption = (
        Redemption.objects.select_for_update(of=("self",))  # `entry` may be NULL (a gift)
        .select_related("reward", "entry")
        .get(pk=redemption.pk)
    )
    if redemption.status == RedemptionStatus.CANCELLED:
        return redemption
    if redemption.entry is None:  # a gift: no points to return
        redemption.status = RedemptionStatus.CANCELLED
        redemption.cancelled_at = now
        redemption.save(update_fields=["status", "cancelled_at"])
        return redemption
    program = program_get(member.tenant)
    pending_mature(member=member, now=now)
    why = reason or ("Refunded" if redemption.status == RedemptionStatus.USED else "Cancelled")
    points_restore(
        member=member,
        program=program,
        debit_entry=redemption.entry,
        reason=f"{why}: {redemption.reward.name} ({redemption.code})",
        source=EntrySource.REDEMPTION,
        now=now,
        source_ref=redemption.code,
        actor=actor,
    )
    redemption.status = RedemptionStatus.CANCELLED
    redemption.cancelled_at = now
    redemption.save(update_fields=["status", "cancelled_at"])
    return redemption
