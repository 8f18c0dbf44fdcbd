"""Request and response shapes of the storefront API (api.md: Members, Orders, Rewards).

Input serializers only validate; services do the writing. Output serializers are declared
field by field so the OpenAPI document states the contract exactly.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime
from decimal import Decimal

import phonenumbers
from rest_framework import serializers

from programs.models import (
    ExpiryPolicy,
    RewardKind,
    Rounding,
    SmsStatus,
    TierBasis,
    TierPeriod,
)
from programs.selectors import next_tier_for
from programs.services.members import Birthday

BIRTHDAY = re.compile(r"^(?:(?P<year>\d{4})|-)-(?P<month>\d{2})-(?P<day>\d{2})$")
MAX_POINTS = 1_000_000_000
MAX_MONEY = Decimal("999999999999.99")


def parse_phone(value: str, region: str) -> str:
    """Any format the brand's default region can parse → E.164; otherwise a field error."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise serializers.ValidationError(
            f"{value!r} is not a valid phone number (use E.164, like +15551234567)."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 40)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value == "":
            return None
        return parse_phone(value, self.context["tenant"].default_country)


class BirthdayField(serializers.CharField):
    """ "YYYY-MM-DD", or "--MM-DD" when the year is unknown; null clears it."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        match = BIRTHDAY.match(value)
        if not match:
            raise serializers.ValidationError('Use "YYYY-MM-DD", or "--MM-DD" without a year.')
        year = int(match["year"]) if match["year"] else None
        month, day = int(match["month"]), int(match["day"])
        try:
            date(year or 2000, month, day)  # 2000 is a leap year: --02-29 is a birthday
        except ValueError:
            raise serializers.ValidationError(f"{value} is not a date.") from None
        if year is not None and not 1900 <= year <= date.today().year:
            raise serializers.ValidationError("The birth year is not plausible.")
        return Birthday(month=month, day=day, year=year)


def validate_timezone_name(value: str) -> str:
    if value and value not in zoneinfo.available_timezones():
        raise serializers.ValidationError(f"{value!r} is not an IANA time zone name.")
    return value


class MemberUpsertSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=255)
    phone = PhoneField(required=False, allow_null=True, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    birthday = BirthdayField(required=False, allow_null=True)
    timezone = serializers.CharField(
        required=False, allow_blank=True, max_length=64, validators=[validate_timezone_name]
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=50
    )

    def validate_external_id(self, value: str) -> str:
        if value != value.strip() or "\x00" in value:
            raise serializers.ValidationError("No leading or trailing spaces.")
        return value


class TierRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class NextTierSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    points_needed = serializers.IntegerField(allow_null=True)
    spend_needed = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)


class ExpiringSerializer(serializers.Serializer):
    points = serializers.IntegerField()
    expires_at = serializers.DateTimeField()


class MemberSerializer(serializers.Serializer):
    """The Member body of api.md. Needs context["member_context"] (selectors.member_context)."""

    external_id = serializers.CharField()
    phone = serializers.CharField(allow_null=True)
    email = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    birthday = serializers.CharField(allow_null=True, help_text='"YYYY-MM-DD" or "--MM-DD"')
    timezone = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    enrolled_at = serializers.DateTimeField()
    points_balance = serializers.IntegerField()
    points_pending = serializers.IntegerField()
    lifetime_points = serializers.IntegerField()
    lifetime_spend = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    orders_count = serializers.IntegerField()
    last_order_at = serializers.DateTimeField(allow_null=True)
    tier = TierRefSerializer(allow_null=True)
    next_tier = NextTierSerializer(allow_null=True)
    points_expiring = ExpiringSerializer(many=True)
    sms_status = serializers.ChoiceField(choices=SmsStatus.choices)

    def to_representation(self, member) -> dict:
        # Written out by hand: this body is in every order's answer, and DRF's per-field
        # machinery costs more than the rest of the request. The fields above document it.
        ctx = self.context["member_context"]
        tier = member.tier if member.tier_id else None
        progress = next_tier_for(member, ctx)
        return {
            "external_id": member.external_id,
            "phone": str(member.phone) if member.phone else None,
            "email": member.email,
            "first_name": member.first_name,
            "last_name": member.last_name,
            "birthday": member.birthday_display,
            "timezone": member.timezone or self.context["tenant"].timezone,
            "tags": list(member.tags),
            "enrolled_at": iso(member.enrolled_at),
            "points_balance": member.points_balance,
            "points_pending": member.points_pending,
            "lifetime_points": member.lifetime_points,
            "lifetime_spend": money(member.lifetime_spend),
            "currency": ctx.program.currency,
            "orders_count": member.orders_count,
            "last_order_at": iso(member.last_order_at),
            "tier": {"id": tier.pk, "name": tier.name} if tier else None,
            "next_tier": {
                "id": progress["id"],
                "name": progress["name"],
                "points_needed": progress["points_needed"],
                "spend_needed": money(progress["spend_needed"]),
            }
            if progress
            else None,
            "points_expiring": [
                {"points": row["points"], "expires_at": iso(row["expires_at"])}
                for row in ctx.expiring.get(member.pk, [])
            ],
            "sms_status": member.sms_status,
        }


def iso(value: datetime | None) -> str | None:
    """As DRF renders a DateTimeField: ISO 8601 in UTC, with "Z"."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def money(value: Decimal | None) -> str | None:
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    points = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    reason = serializers.CharField()
    source = serializers.SerializerMethodField()
    source_ref = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)

    def get_source(self, entry) -> str:
        if entry.source == "manual":
            return f"manual by {entry.actor.email}" if entry.actor_id else "manual by API"
        return entry.source


class AdjustmentSerializer(serializers.Serializer):
    points = serializers.IntegerField(min_value=-MAX_POINTS, max_value=MAX_POINTS)
    reason = serializers.CharField(max_length=300)

    def validate_points(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("An adjustment moves at least one point.")
        return value


class OrderSerializer(serializers.Serializer):
    order_id = serializers.CharField(max_length=255)
    member = serializers.CharField(max_length=255, help_text="The member's external_id.")
    subtotal = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal(0), max_value=MAX_MONEY
    )
    currency = serializers.RegexField(r"^[A-Z]{3}$", error_messages={"invalid": "ISO 4217 code"})
    placed_at = serializers.DateTimeField(required=False)


class OrderResultSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    points_awarded = serializers.IntegerField()
    points_pending = serializers.BooleanField()
    member = MemberSerializer()


class RefundSerializer(serializers.Serializer):
    refund_id = serializers.CharField(max_length=255)
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), max_value=MAX_MONEY
    )


class RefundResultSerializer(serializers.Serializer):
    refund_id = serializers.CharField()
    points_reversed = serializers.IntegerField()
    points_unrecovered = serializers.IntegerField()
    member = MemberSerializer()


class RewardSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=RewardKind.choices)
    points_cost = serializers.IntegerField(min_value=1, max_value=MAX_POINTS)
    value = serializers.JSONField(required=False, allow_null=True)
    active = serializers.BooleanField(required=False, default=True)

    def to_representation(self, reward):
        data = super().to_representation(reward)
        data["value"] = reward.value or None
        return data

    def validate_value(self, value):
        if isinstance(value, dict | list | bool):
            raise serializers.ValidationError("A string or a number.")
        return value


class RewardUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    points_cost = serializers.IntegerField(min_value=1, max_value=MAX_POINTS, required=False)
    value = serializers.JSONField(required=False, allow_null=True)
    active = serializers.BooleanField(required=False)


class RedeemSerializer(serializers.Serializer):
    reward_id = serializers.IntegerField(min_value=1)


class RedemptionSerializer(serializers.Serializer):
    redemption_id = serializers.IntegerField(source="pk")
    code = serializers.CharField()
    status = serializers.CharField()
    reward = RewardSerializer()
    points_spent = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)


class RedemptionResultSerializer(serializers.Serializer):
    redemption_id = serializers.IntegerField()
    code = serializers.CharField()
    points_spent = serializers.IntegerField()
    member = MemberSerializer()


class RedemptionUseSerializer(serializers.Serializer):
    order_id = serializers.CharField(max_length=255, required=False, allow_blank=True)


class RedemptionCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class TierSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=60)
    threshold = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal(0), max_value=MAX_MONEY
    )
    basis = serializers.ChoiceField(choices=TierBasis.choices)
    period = serializers.ChoiceField(choices=TierPeriod.choices)
    earn_multiplier = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal(1),
        max_value=Decimal(10),
        required=False,
        default=Decimal(1),
    )
    perks = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class MultiplierEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    multiplier = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal("1.01"), max_value=Decimal(10)
    )
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    tier_id = serializers.IntegerField(required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": ["must be after starts_at"]})
        return attrs


class ProgramSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    points_name = serializers.CharField(max_length=40, required=False)
    currency = serializers.CharField(read_only=True)
    earn_rate = serializers.DecimalField(
        max_digits=10,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal(100000),
        required=False,
    )
    rounding = serializers.ChoiceField(choices=Rounding.choices, required=False)
    enrollment_bonus = serializers.IntegerField(min_value=0, max_value=MAX_POINTS, required=False)
    birthday_bonus = serializers.IntegerField(min_value=0, max_value=MAX_POINTS, required=False)
    sms_bonus = serializers.IntegerField(min_value=0, max_value=MAX_POINTS, required=False)
    pending_days = serializers.IntegerField(min_value=0, max_value=365, required=False)
    expiry_policy = serializers.ChoiceField(choices=ExpiryPolicy.choices, required=False)
    expiry_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True
    )
    tiers = TierSerializer(many=True, read_only=True)
    rewards = RewardSerializer(many=True, read_only=True)
    multiplier_events = MultiplierEventSerializer(many=True, read_only=True)
