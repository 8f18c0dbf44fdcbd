"""Program setup: the program itself, tiers, rewards and multiplier events.

Every change leaves an AuditEvent (who, what) in the same transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loyaltysms.models import Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from programs.models import (
    ExpiryPolicy,
    MultiplierEvent,
    Program,
    Reward,
    RewardKind,
    Tier,
    TierBasis,
    TierPeriod,
)

PROGRAM_FIELDS = (
    "name",
    "points_name",
    "earn_rate",
    "rounding",
    "enrollment_bonus",
    "birthday_bonus",
    "sms_bonus",
    "pending_days",
    "expiry_policy",
    "expiry_days",
)


class Conflict(ProblemError):
    status_code = 409
    code = "conflict"


# The program and the tier ladder are read by every order. Each process keeps them for a few
# seconds; a change made in this process drops them at once, a change made in another process
# is seen within SETTINGS_TTL. (Settings change rarely; orders arrive all the time.)
SETTINGS_TTL = 5.0
_programs: dict[int, tuple[float, Program]] = {}
_ladders: dict[int, tuple[float, list[Tier]]] = {}


def _fresh(cache: dict, tenant_id: int):
    hit = cache.get(tenant_id)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def settings_changed(tenant: Tenant) -> None:
    _programs.pop(tenant.pk, None)
    _ladders.pop(tenant.pk, None)


def program_get(tenant: Tenant) -> Program:
    """The brand's program; a brand without one gets the working default (1 point per unit)."""
    program = _fresh(_programs, tenant.pk)
    if program is not None:
        return program
    with tenant_scope(tenant):
        program = Program.objects.filter().first()
        if program is None:
            try:
                with transaction.atomic():
                    program = Program.objects.create(currency=tenant.currency)
            except IntegrityError:  # created by a concurrent request a moment ago
                program = Program.objects.get()
    program.tenant = tenant
    _programs[tenant.pk] = (time.monotonic() + SETTINGS_TTL, program)
    return program


def tier_ladder_get(tenant: Tenant) -> list[Tier]:
    """The brand's tiers from the lowest threshold up."""
    ladder = _fresh(_ladders, tenant.pk)
    if ladder is None:
        with tenant_scope(tenant):
            ladder = list(Tier.objects.order_by("threshold"))
        _ladders[tenant.pk] = (time.monotonic() + SETTINGS_TTL, ladder)
    return ladder


@transaction.atomic
def program_update(*, program: Program, actor: User | None = None, **changes) -> Program:
    """Change program settings. An expiry policy other than "never" needs a number of days."""
    unknown = set(changes) - set(PROGRAM_FIELDS)
    if unknown:
        raise ValueError(f"not program settings: {sorted(unknown)}")
    tenant = program.tenant
    settings_changed(tenant)
    # A fresh, locked copy: the shared cached one must never hold half-applied changes.
    program = Program.objects.unscoped().select_for_update().get(pk=program.pk)
    program.tenant = tenant
    for field, value in changes.items():
        setattr(program, field, value)
    if program.expiry_policy == ExpiryPolicy.NEVER:
        program.expiry_days = None
    elif not program.expiry_days:
        raise ValidationError({"expiry_days": ["Give the number of days before points expire."]})
    program.full_clean(exclude=["tenant"])
    program.save(update_fields=[*changes, "expiry_days", "updated_at"])
    settings_changed(program.tenant)
    audit(
        tenant=program.tenant,
        actor=actor,
        action="program.updated",
        target=program.name,
        **{k: str(v) for k, v in changes.items()},
    )
    return program


def _check_ladder(tier: Tier) -> None:
    """All tiers share one basis and one period: members climb one ladder."""
    other = Tier.objects.exclude(pk=tier.pk).first()
    if other and (other.basis, other.period) != (tier.basis, tier.period):
        raise ProblemError(
            f"All tiers use one basis and period; the existing tiers qualify on "
            f"{other.basis} over {other.period}. Change them all together.",
            errors={"basis": [f"must be {other.basis}"], "period": [f"must be {other.period}"]},
        )


def _save_unique(instance, *, fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            instance.save(update_fields=fields) if fields else instance.save()
    except IntegrityError as error:
        name = type(instance).__name__.lower()
        raise Conflict(f"A {name} with this name or threshold exists already.") from error


@transaction.atomic
def tier_create(
    *,
    tenant: Tenant,
    name: str,
    threshold: Decimal,
    basis: str,
    period: str,
    earn_multiplier: Decimal = Decimal(1),
    perks: str = "",
    actor: User | None = None,
) -> Tier:
    with tenant_scope(tenant):
        tier = Tier(
            tenant=tenant,
            name=name,
            threshold=threshold,
            basis=basis,
            period=period,
            earn_multiplier=earn_multiplier,
            perks=perks,
        )
        tier.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
        _check_ladder(tier)
        _save_unique(tier)
        settings_changed(tenant)
        audit(tenant=tenant, actor=actor, action="tier.created", target=name)
    return tier


@transaction.atomic
def tier_update(*, tier: Tier, actor: User | None = None, **changes) -> Tier:
    for field, value in changes.items():
        setattr(tier, field, value)
    tier.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    _check_ladder(tier)
    _save_unique(tier, fields=list(changes))
    settings_changed(tier.tenant)
    audit(tenant=tier.tenant, actor=actor, action="tier.updated", target=tier.name)
    return tier


@transaction.atomic
def tier_delete(*, tier: Tier, actor: User | None = None) -> None:
    """Members in the tier drop to no tier until their next qualifying activity."""
    audit(tenant=tier.tenant, actor=actor, action="tier.deleted", target=tier.name)
    settings_changed(tier.tenant)
    tier.delete()


def reward_value_clean(kind: str, value) -> str:
    """The value a reward kind needs, as stored: money, a percentage, a product, or nothing."""
    value = "" if value is None else str(value).strip()
    if kind == RewardKind.FIXED_AMOUNT:
        try:
            amount = Decimal(value)
        except ArithmeticError:
            amount = None
        if (
            amount is None
            or not amount.is_finite()
            or amount <= 0
            or -amount.as_tuple().exponent > 2
        ):
            raise ValidationError({"value": ['Give the amount off as money, like "5.00".']})
        return f"{amount:.2f}"
    if kind == RewardKind.PERCENT_OFF:
        try:
            percent = Decimal(value)
        except ArithmeticError:
            percent = None
        if percent is None or not percent.is_finite() or not 0 < percent <= 100:
            raise ValidationError({"value": ['Give a percentage between 0 and 100, like "15".']})
        return f"{percent.normalize():f}"
    if kind == RewardKind.FREE_SHIPPING:
        return ""
    if not value:
        what = "product SKU or id" if kind == RewardKind.FREE_PRODUCT else "description"
        raise ValidationError({"value": [f"Give the {what} for this reward."]})
    return value[:200]


@transaction.atomic
def reward_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str,
    points_cost: int,
    value=None,
    actor: User | None = None,
) -> Reward:
    with tenant_scope(tenant):
        reward = Reward(
            tenant=tenant,
            name=name,
            kind=kind,
            points_cost=points_cost,
            value=reward_value_clean(kind, value),
        )
        reward.full_clean(exclude=["tenant"], validate_constraints=False)
        reward.save()
        audit(tenant=tenant, actor=actor, action="reward.created", target=name)
    return reward


@transaction.atomic
def reward_update(*, reward: Reward, actor: User | None = None, **changes) -> Reward:
    for field, value in changes.items():
        setattr(reward, field, value)
    reward.value = reward_value_clean(reward.kind, reward.value)
    reward.full_clean(exclude=["tenant"], validate_constraints=False)
    reward.save(update_fields=sorted({*changes, "value"}))
    audit(tenant=reward.tenant, actor=actor, action="reward.updated", target=reward.name)
    return reward


@transaction.atomic
def multiplier_event_create(
    *,
    tenant: Tenant,
    name: str,
    multiplier: Decimal,
    starts_at,
    ends_at,
    tier: Tier | None = None,
    actor: User | None = None,
) -> MultiplierEvent:
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": ["The event must end after it starts."]})
    if multiplier <= 1:
        raise ValidationError({"multiplier": ["A multiplier event multiplies: more than 1×."]})
    with tenant_scope(tenant):
        event = MultiplierEvent.objects.create(
            name=name, multiplier=multiplier, starts_at=starts_at, ends_at=ends_at, tier=tier
        )
        audit(tenant=tenant, actor=actor, action="multiplier_event.created", target=name)
    return event


@transaction.atomic
def multiplier_event_delete(*, event: MultiplierEvent, actor: User | None = None) -> None:
    audit(tenant=event.tenant, actor=actor, action="multiplier_event.deleted", target=event.name)
    event.delete()


# A ladder and a catalog that suit most brands, for a new program to start from.
STARTER_TIERS = [
    ("Silver", 500, "1.00", "Free shipping on every order"),
    ("Gold", 1500, "1.25", "1.25× points on every order, early access to sales"),
    ("Platinum", 3000, "1.50", "1.5× points on every order, a birthday gift"),
]
STARTER_REWARDS = [
    ("Free shipping", RewardKind.FREE_SHIPPING, 300, None),
    ("{five} off", RewardKind.FIXED_AMOUNT, 500, "5.00"),
    ("10% off", RewardKind.PERCENT_OFF, 1000, "10"),
]


@dataclass(frozen=True)
class Starter:
    tiers: int
    rewards: int


@transaction.atomic
def program_starter_apply(*, tenant: Tenant, actor: User | None = None) -> Starter:
    """The starter tiers (on points earned over the calendar year) when the brand has none,
    and the starter rewards when it has none; what exists is left alone. Twice is once."""
    # A double click waits, then sees (a no-key lock: the brand's other writes go on).
    Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
    with tenant_scope(tenant):
        has_tiers = Tier.objects.exists()
        has_rewards = Reward.objects.filter(active=True).exists()
    tiers = [] if has_tiers else STARTER_TIERS
    rewards = [] if has_rewards else STARTER_REWARDS
    for name, threshold, multiplier, perks in tiers:
        tier_create(
            tenant=tenant,
            name=name,
            threshold=Decimal(threshold),
            basis=TierBasis.POINTS_EARNED,
            period=TierPeriod.CALENDAR_YEAR,
            earn_multiplier=Decimal(multiplier),
            perks=perks,
            actor=actor,
        )
    currency = program_get(tenant).currency
    five = "$5" if currency == "USD" else f"5 {currency}"
    for name, kind, cost, value in rewards:
        reward_create(
            tenant=tenant,
            name=name.format(five=five),
            kind=kind,
            points_cost=cost,
            value=value,
            actor=actor,
        )
    return Starter(tiers=len(tiers), rewards=len(rewards))
