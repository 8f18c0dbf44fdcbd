"""The loyalty engine's tables: program, tiers, members, the points ledger, orders, rewards.

Foreign keys to a member carry no index of their own where a (tenant, member, …) index
exists: one index fewer per table is one write fewer per row on the hot paths.

The ledger is the truth: every points movement is a PointsEntry with a reason and a source,
and the member's balance is a denormalized copy that database constraints keep ≥ 0. Earned
points live in lots (PointsLot) with what remains of them and when they expire; a debit
records which lots it took from (LotDebit) so a refund or a cancellation can put points back
where they came from.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from phonenumber_field.modelfields import PhoneNumberField

from loyaltysms.models import TenantOwnedModel


class Rounding(models.TextChoices):
    FLOOR = "floor", "Round down"
    NEAREST = "nearest", "Round to nearest"
    CEIL = "ceil", "Round up"


class ExpiryPolicy(models.TextChoices):
    NEVER = "never", "Points never expire"
    LOT = "lot", "Each earning expires N days after it was earned"
    INACTIVITY = "inactivity", "The whole balance expires after N days without activity"


class Program(TenantOwnedModel):
    """A brand's loyalty program; exactly one per tenant, created with working defaults."""

    name = models.CharField(max_length=100, default="Rewards")
    points_name = models.CharField(max_length=40, default="points")
    currency = models.CharField(max_length=3, default="USD")
    earn_rate = models.DecimalField(
        max_digits=10, decimal_places=4, default=Decimal(1), validators=[MinValueValidator(0)]
    )
    rounding = models.CharField(max_length=8, choices=Rounding.choices, default=Rounding.FLOOR)
    enrollment_bonus = models.PositiveIntegerField(default=0)
    birthday_bonus = models.PositiveIntegerField(default=0)
    sms_bonus = models.PositiveIntegerField(default=0)
    pending_days = models.PositiveIntegerField(default=0)
    expiry_policy = models.CharField(
        max_length=12, choices=ExpiryPolicy.choices, default=ExpiryPolicy.NEVER
    )
    expiry_days = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="program_one_per_tenant"),
            models.CheckConstraint(
                condition=Q(expiry_policy="never") | Q(expiry_days__gte=1),
                name="program_expiry_needs_days",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TierBasis(models.TextChoices):
    POINTS_EARNED = "points_earned", "Points earned"
    SPEND = "spend", "Spend"


class TierPeriod(models.TextChoices):
    CALENDAR_YEAR = "calendar_year", "Calendar year"
    ROLLING_12_MONTHS = "rolling_12_months", "Rolling 12 months"
    LIFETIME = "lifetime", "Lifetime"


class Tier(TenantOwnedModel):
    """A VIP tier. All tiers of a program share one basis and period (a ladder, not a maze)."""

    name = models.CharField(max_length=60)
    threshold = models.DecimalField(max_digits=14, decimal_places=2)
    basis = models.CharField(max_length=16, choices=TierBasis.choices)
    period = models.CharField(max_length=20, choices=TierPeriod.choices)
    earn_multiplier = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(1))
    perks = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["threshold"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="tier_name_unique"),
            models.UniqueConstraint(fields=["tenant", "threshold"], name="tier_threshold_unique"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="tier_threshold_gte_0"),
            models.CheckConstraint(
                condition=Q(earn_multiplier__gte=1), name="tier_multiplier_gte_1"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MultiplierEvent(TenantOwnedModel):
    """ "2× points this weekend": orders placed in [starts_at, ends_at) earn `multiplier` times."""

    name = models.CharField(max_length=100)
    multiplier = models.DecimalField(max_digits=5, decimal_places=2)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="mult_ends_after"),
            models.CheckConstraint(condition=Q(multiplier__gt=1), name="mult_gt_1"),
        ]
        indexes = [models.Index(fields=["tenant", "starts_at"], name="mult_tenant_starts")]

    def __str__(self) -> str:
        return f"{self.name} ({self.multiplier}×)"


class SmsStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    PENDING = "pending", "Pending"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    NONE = "none", "None"


class Member(TenantOwnedModel):
    """A customer in the program. The points fields are kept by the ledger services only."""

    external_id = models.CharField(max_length=255)
    phone = PhoneNumberField(null=True, blank=True)
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    birthday_month = models.PositiveSmallIntegerField(null=True, blank=True)
    birthday_day = models.PositiveSmallIntegerField(null=True, blank=True)
    birthday_year = models.PositiveSmallIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, blank=True)  # blank: the brand's
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    enrolled_at = models.DateTimeField()
    points_balance = models.IntegerField(default=0)
    points_pending = models.IntegerField(default=0)
    lifetime_points = models.IntegerField(default=0)
    lifetime_spend = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    orders_count = models.IntegerField(default=0)
    last_order_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField()
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL)
    tier_review_at = models.DateTimeField(null=True, blank=True)
    # Written by the messaging app through programs.services.member_set_sms_status.
    sms_status = models.CharField(max_length=12, choices=SmsStatus.choices, default=SmsStatus.NONE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="member_external_id"),
            models.CheckConstraint(condition=Q(points_balance__gte=0), name="member_balance_gte_0"),
            models.CheckConstraint(condition=Q(points_pending__gte=0), name="member_pending_gte_0"),
            models.CheckConstraint(
                condition=Q(birthday_month__isnull=True)
                | (Q(birthday_month__range=(1, 12)) & Q(birthday_day__range=(1, 31))),
                name="member_birthday_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "phone"], name="member_tenant_phone"),
            models.Index("tenant", Lower("email"), name="member_tenant_email"),
            models.Index("tenant", Lower("last_name"), name="member_tenant_last_name"),
            models.Index(
                fields=["tenant", "birthday_month", "birthday_day"], name="member_tenant_birthday"
            ),
            models.Index(fields=["tenant", "tier_review_at"], name="member_tenant_tier_review"),
            # Newest members first (segment samples, the members list); created_at never
            # changes, so balance updates stay heap-only.
            models.Index(fields=["tenant", "-created_at", "-id"], name="member_tenant_newest"),
        ]

    def __str__(self) -> str:
        return self.full_name or self.external_id

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def birthday_display(self) -> str | None:
        if self.birthday_month is None:
            return None
        if self.birthday_year is None:
            return f"--{self.birthday_month:02d}-{self.birthday_day:02d}"
        return f"{self.birthday_year:04d}-{self.birthday_month:02d}-{self.birthday_day:02d}"


class EntryKind(models.TextChoices):
    EARN = "earn", "Earn"
    REDEEM = "redeem", "Redeem"
    EXPIRE = "expire", "Expire"
    ADJUST = "adjust", "Adjust"
    REVERSE = "reverse", "Reverse"


class EntrySource(models.TextChoices):
    ORDER = "order", "Order"
    REFUND = "refund", "Refund"
    BONUS = "bonus", "Bonus"
    MANUAL = "manual", "Manual"
    REDEMPTION = "redemption", "Redemption"
    EXPIRY = "expiry", "Expiry"


class PointsEntry(TenantOwnedModel):
    """One movement of points. Append-only: a trigger refuses UPDATE (see the migration)."""

    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="entries", db_index=False
    )
    kind = models.CharField(max_length=8, choices=EntryKind.choices)
    points = models.IntegerField()
    balance_after = models.IntegerField()
    reason = models.CharField(max_length=300)
    source = models.CharField(max_length=12, choices=EntrySource.choices)
    source_ref = models.CharField(max_length=255, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # A bonus is paid at most once per its rule's period ("birthday:2026", "enrollment").
    bonus_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: no bonus
    expires_at = models.DateTimeField(null=True, blank=True)  # of the lot an earn entry opened
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "bonus_key"],
                condition=Q(bonus_key__isnull=False),
                name="entry_bonus_once",
            ),
            models.CheckConstraint(condition=~Q(points=0), name="entry_points_nonzero"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="entry_balance_gte_0"),
        ]
        indexes = [
            models.Index(fields=["tenant", "member", "-id"], name="entry_tenant_member"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d}"


class PointsLot(TenantOwnedModel):
    """Points earned together, what remains of them and when they expire.

    A lot with `available_at` in the future is pending (an order inside its return window):
    it counts in points_pending, not in the balance, and opens its earn entry when it matures.
    """

    # member and order: no single-column indexes; the partial indexes below serve every read,
    # and expiring a lot then touches no index but the primary key (see Meta).
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="lots", db_index=False
    )
    points = models.IntegerField()
    remaining = models.IntegerField()
    expired = models.IntegerField(default=0)  # what was left of it when it expired
    earned_at = models.DateTimeField()
    available_at = models.DateTimeField()
    matured = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey(
        "Order", null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    source = models.CharField(max_length=12, choices=EntrySource.choices)
    reason = models.CharField(max_length=300)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(remaining__gte=0), name="lot_remaining_gte_0"),
            models.CheckConstraint(
                condition=Q(remaining__lte=F("points")), name="lot_remaining_lte_points"
            ),
        ]
        indexes = [
            # Spending order (first to expire first) and the expiry scan.
            models.Index(
                fields=["tenant", "member", "expires_at", "id"],
                condition=Q(remaining__gt=0),
                name="lot_open_by_member",
            ),
            models.Index(
                fields=["tenant", "expires_at"],
                condition=Q(remaining__gt=0, matured=True),
                name="lot_open_by_expiry",
            ),
            models.Index(
                fields=["tenant", "member", "available_at"],
                condition=Q(matured=False),
                name="lot_pending_by_member",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.remaining}/{self.points}"


class LotDebit(TenantOwnedModel):
    """How many points a debit entry took from which lot."""

    entry = models.ForeignKey(
        PointsEntry, on_delete=models.CASCADE, related_name="debits", db_index=False
    )
    lot = models.ForeignKey(
        PointsLot, on_delete=models.CASCADE, related_name="debits", db_index=False
    )
    points = models.IntegerField(validators=[MinValueValidator(1)])

    class Meta:
        indexes = [models.Index(fields=["tenant", "entry"], name="lotdebit_tenant_entry")]


class Order(TenantOwnedModel):
    """An order the storefront reported; its first API response is kept for replays."""

    order_id = models.CharField(max_length=255)
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    subtotal = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    placed_at = models.DateTimeField()
    points_awarded = models.IntegerField(default=0)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    # Points the refunds took back or tried to (what the ledger could not recover is on Refund).
    points_reversed = models.IntegerField(default=0)
    response = models.BinaryField(null=True)  # the first response's JSON, byte for byte
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "order_id"], name="order_id_unique"),
            models.CheckConstraint(condition=Q(subtotal__gte=0), name="order_subtotal_gte_0"),
            models.CheckConstraint(
                condition=Q(refunded_amount__lte=F("subtotal")), name="order_refund_lte_subtotal"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "member", "placed_at"], name="order_tenant_member"),
            # New orders of every brand by arrival (the attribution scan): orders are written
            # in created_at order, so a block-range index finds them at almost no cost to
            # each insert.
            BrinIndex(fields=["created_at"], name="order_created_brin"),
        ]

    def __str__(self) -> str:
        return self.order_id


class Refund(TenantOwnedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds")
    refund_id = models.CharField(max_length=255)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    points_reversed = models.IntegerField(default=0)
    points_unrecovered = models.IntegerField(default=0)
    response = models.BinaryField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "refund_id"], name="refund_id_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return self.refund_id


class RewardKind(models.TextChoices):
    FIXED_AMOUNT = "fixed_amount", "Fixed amount off"
    PERCENT_OFF = "percent_off", "Percent off"
    FREE_SHIPPING = "free_shipping", "Free shipping"
    FREE_PRODUCT = "free_product", "Free product"
    CUSTOM = "custom", "Custom"


class Reward(TenantOwnedModel):
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=RewardKind.choices)
    points_cost = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    # fixed_amount: money ("5.00"); percent_off: 1–100; free_product: the product's SKU or id;
    # custom: what the storefront should give; free_shipping: empty.
    value = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["points_cost", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_cost__gte=1), name="reward_cost_gte_1"),
        ]
        indexes = [models.Index(fields=["tenant", "points_cost"], name="reward_tenant_cost")]

    def __str__(self) -> str:
        return self.name


class RedemptionStatus(models.TextChoices):
    ISSUED = "issued", "Issued"
    USED = "used", "Used"
    CANCELLED = "cancelled", "Cancelled"


class Redemption(TenantOwnedModel):
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="redemptions", db_index=False
    )
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT)
    code = models.CharField(max_length=32)
    points_spent = models.IntegerField()
    status = models.CharField(
        max_length=10, choices=RedemptionStatus.choices, default=RedemptionStatus.ISSUED
    )
    # The debit that paid for it; None for a gift (a flow's reward: nothing was spent).
    entry = models.ForeignKey(
        PointsEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A gift is issued at most once per key (a flow run's step).
    gift_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: bought
    created_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="redemption_code_unique"),
            models.UniqueConstraint(
                fields=["tenant", "gift_key"],
                condition=Q(gift_key__isnull=False),
                name="redemption_gift_once",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "member", "-id"], name="redemption_tenant_member"),
        ]

    def __str__(self) -> str:
        return self.code


class TierChange(TenantOwnedModel):
    """Tier history: every move, up or down, with what the member had qualified with."""

    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="tier_changes", db_index=False
    )
    from_tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    direction = models.CharField(max_length=4, choices=[("up", "Up"), ("down", "Down")])
    qualifying_value = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "member", "-id"], name="tierchange_member")]


class EventKind(models.TextChoices):
    MEMBER_ENROLLED = "member_enrolled"
    POINTS_EARNED = "points_earned"
    POINTS_REDEEMED = "points_redeemed"
    POINTS_EXPIRED = "points_expired"
    TIER_CHANGED = "tier_changed"
    REWARD_REDEEMED = "reward_redeemed"
    ORDER_PLACED = "order_placed"
    ORDER_REFUNDED = "order_refunded"
    SMS_SUBSCRIBED = "sms_subscribed"  # written by messaging: a number's subscription began
    SMS_UNSUBSCRIBED = "sms_unsubscribed"  # written by messaging: a number's subscription ended


class LoyaltyEvent(TenantOwnedModel):
    """The outbox: written in the same transaction as the change it reports."""

    kind = models.CharField(max_length=24, choices=EventKind.choices)
    member = models.ForeignKey(
        Member, null=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)  # by the flow engine
    # By the outgoing webhooks (hooks.services.fan_out): the event's deliveries exist. A marker
    # of its own rather than a cursor on ids: transactions commit out of id order.
    hooked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["tenant", "id"],
                condition=Q(processed_at__isnull=True),
                name="event_unprocessed",
            ),
            models.Index(
                fields=["tenant", "id"], condition=Q(hooked_at__isnull=True), name="event_unhooked"
            ),
            models.Index(fields=["tenant", "member", "-id"], name="event_tenant_member"),
        ]

    def __str__(self) -> str:
        return self.kind


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class MemberImport(TenantOwnedModel):
    """A CSV upload from the dashboard, imported by a worker while the page shows progress."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    filename = models.CharField(max_length=255)
    content = models.TextField()  # emptied once imported
    status = models.CharField(
        max_length=8, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    total_rows = models.IntegerField(default=0)
    processed_rows = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="memberimport_tenant")]

    def __str__(self) -> str:
        return self.filename

    @property
    def percent(self) -> int:
        return int(self.processed_rows * 100 / self.total_rows) if self.total_rows else 100
