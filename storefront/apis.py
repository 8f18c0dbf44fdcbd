"""The widget's endpoints, /widget/v1/<publishable key>/…: what a store's page may do with
the brand's public key and nothing more.

- config: the program, the rewards, the compliant disclosure to show beside the opt-in.
- subscribe: a number's opt-in with the exact disclosure shown as consent evidence; double
  opt-in always (the key is public, so the number's owner must confirm by text).
- member / redeem: only for the customer the store's server signed (storefront.services).

A browser request from an origin the brand hasn't listed is refused (403) before anything
happens, and only listed origins get CORS headers. Each endpoint is rate limited per visitor
address and brand. Errors are application/problem+json, like the REST API.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone
from redis.exceptions import RedisError
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from loyaltysms.tenancy.context import activate
from loyaltysms.throttling import let_through_while_cache_down
from messaging.models import (
    ConsentAction,
    ConsentRecord,
    ConsentSource,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.setup import brand_name, messaging_settings_get
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs import selectors as program_selectors
from programs.apis import member_body
from programs.models import Member, Redemption, Reward
from programs.serializers import PhoneField
from programs.services.program import program_get, tier_ladder_get
from programs.services.rewards import redemption_create
from storefront.services import customer_verified, widget_by_key

logger = logging.getLogger(__name__)

RECENT_REDEMPTIONS = 5
# A number asked to confirm isn't asked again for this long, however often it is entered.
CONFIRMATION_AGAIN_AFTER = timedelta(hours=24)
CORS_METHODS = "GET, POST, OPTIONS"


class CustomerNotVerified(exceptions.APIException):
    """401: the page didn't prove which customer it shows (DRF would make NotAuthenticated a
    403 for a view without authentication classes)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "customer-not-verified"
    default_detail = (
        "The store's signature for this customer is missing, wrong or older than a day."
    )


class WidgetThrottle(ScopedRateThrottle):
    """Per brand and visitor address (REST_FRAMEWORK DEFAULT_THROTTLE_RATES widget_*).

    The counts live in the Redis cache. While it can't be reached the visitor is let through:
    these limits slow one address down over a minute, and the storefront must not go down
    with the cache (what costs the brand money, the texts, has its own cap below)."""

    def get_cache_key(self, request, view):
        return f"throttle:{self.scope}:{view.widget.pk}:{self.get_ident(request)}"

    @let_through_while_cache_down
    def allow_request(self, request, view):
        return super().allow_request(request, view)


class WidgetApi(APIView):
    # Not in the storefront API's OpenAPI document (/api/schema/): docs/widget.md describes
    # these, which only the widget's script calls.
    schema = None
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [WidgetThrottle]
    throttle_scope = "widget_read"
    widget = None

    def initial(self, request, *args, **kwargs):
        widget = widget_by_key(kwargs.get("key", ""))
        if widget is None:
            raise exceptions.NotFound("No widget has this key, or it is switched off.")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in widget.allowed_origins:
            raise exceptions.PermissionDenied(
                "This store's address isn't allowed for this widget: add it under Settings → "
                "Widget."
            )
        self.widget = widget
        activate(widget.tenant)  # undone by TenantContextMiddleware at the end of the request
        request.tenant = widget.tenant
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = request.headers.get("Origin")
        response["Vary"] = "Origin"
        if self.widget is not None and origin in self.widget.allowed_origins:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = CORS_METHODS
            response["Access-Control-Allow-Headers"] = "Content-Type"
            response["Access-Control-Max-Age"] = "600"
        response["Cache-Control"] = "no-store"
        return response

    def options(self, request, *args, **kwargs):
        return Response(status=status.HTTP_204_NO_CONTENT)  # the CORS preflight

    def get_throttles(self):
        # A preflight is the browser's, not a use: it mustn't spend the visitor's quota.
        return [] if self.request.method == "OPTIONS" else super().get_throttles()

    @property
    def tenant(self):
        return self.widget.tenant

    def signed_customer(self, data) -> tuple[str, Member | None]:
        """The customer the store's server signed, and their membership (None when they
        aren't a member yet); 401 for a missing, wrong or stale signature."""
        customer = str(data.get("customer") or "")[:255]
        if not customer_verified(
            self.widget,
            customer,
            str(data.get("ts") or ""),
            str(data.get("signature") or ""),
            timezone.now(),
        ):
            raise CustomerNotVerified()
        member = Member.objects.filter(tenant=self.tenant, external_id=customer).first()
        return customer, member


def _rewards(tenant) -> list[dict]:
    rewards = Reward.objects.filter(tenant=tenant, active=True).order_by("points_cost", "id")
    return [
        {"id": r.pk, "name": r.name, "kind": r.kind, "points_cost": r.points_cost} for r in rewards
    ]


class WidgetConfigApi(WidgetApi):
    def get(self, request, key: str):
        tenant = self.tenant
        program = program_get(tenant)
        settings = messaging_settings_get(tenant)
        return Response(
            {
                "brand": brand_name(tenant, settings),
                "program": {"name": program.name, "points_name": program.points_name},
                "disclosure": {
                    "text": settings.disclosure_text,
                    "version": settings.disclosure_version,
                    "terms_url": settings.terms_url,
                    "privacy_url": settings.privacy_url,
                },
                "tiers": [
                    {"name": tier.name, "threshold": str(tier.threshold), "basis": tier.basis}
                    for tier in tier_ladder_get(tenant)
                ],
                "rewards": _rewards(tenant),
            }
        )


class SubscribeSerializer(serializers.Serializer):
    phone = PhoneField()
    consent = serializers.BooleanField()
    disclosure_version = serializers.IntegerField(min_value=1)
    page_url = serializers.URLField(max_length=2000, required=False, default="")
    customer = serializers.CharField(max_length=255, required=False, default="")
    ts = serializers.CharField(max_length=20, required=False, default="")
    signature = serializers.CharField(max_length=128, required=False, default="")

    def validate_phone(self, value):
        if value is None:
            raise serializers.ValidationError("Give your mobile number.")
        return value

    def validate_consent(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError("Tick the box to agree to the texts.")
        return value


class WidgetSubscribeApi(WidgetApi):
    throttle_scope = "widget_subscribe"

    def brand_signups_allowed(self) -> None:
        """At most WIDGET_SIGNUPS_PER_HOUR sign-ups a brand's widget starts (each one texts a
        number at the brand's cost), whatever the visitors' addresses."""
        hour = int(time.time() // 3600)
        key = f"widget:signups:{self.widget.pk}:{hour}"
        try:
            cache.add(key, 0, timeout=3600)
            signups = cache.incr(key)
        except RedisError as exc:
            # The cache is unreachable: the hour's sign-ups counted in PostgreSQL instead
            # (slower, but the cap still holds), this one included.
            logger.warning("widget sign-ups counted in the database", extra={"error": str(exc)})
            signups = 1 + self.signups_recorded(since=datetime.fromtimestamp(hour * 3600, UTC))
        if signups > django_settings.WIDGET_SIGNUPS_PER_HOUR:
            raise exceptions.Throttled(wait=3600 - time.time() % 3600)

    def signups_recorded(self, *, since: datetime) -> int:
        """The sign-ups this widget started since then, from their consent records."""
        return ConsentRecord.objects.filter(
            tenant=self.tenant,
            action=ConsentAction.OPT_IN_REQUESTED,
            source=ConsentSource.LOYALTY_PAGE,
            evidence__widget=self.widget.publishable_key,
            created_at__gte=since,
        ).count()

    def post(self, request, key: str):
        serializer = SubscribeSerializer(data=request.data, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        settings = messaging_settings_get(self.tenant)
        if data["disclosure_version"] != settings.disclosure_version:
            raise exceptions.ValidationError(
                {"disclosure_version": ["The terms changed while the page was open: reload it."]}
            )
        member = None
        if data["customer"]:
            _customer, member = self.signed_customer(data)
        now = timezone.now()
        existing = Subscriber.objects.filter(tenant=self.tenant, phone=data["phone"]).first()
        if existing is not None and existing.member_id not in (None, getattr(member, "pk", None)):
            member = None  # the number is another member's: a sign-up never re-links it
        asked_lately = (
            existing is not None
            and existing.status == SubscriberStatus.PENDING
            and existing.pending_since is not None
            and existing.pending_since > now - CONFIRMATION_AGAIN_AFTER
        )
        if not asked_lately:  # one "Reply Y" a day at most: the widget can't pump texts
            self.brand_signups_allowed()
            subscriber_opt_in(
                tenant=self.tenant,
                phone=data["phone"],
                evidence=Evidence(
                    source=ConsentSource.LOYALTY_PAGE,
                    disclosure_text=settings.disclosure_text,  # exactly what the widget showed
                    disclosure_version=str(settings.disclosure_version),
                    page_url=data["page_url"] or request.headers.get("Origin", ""),
                    ip=WidgetThrottle().get_ident(request),
                    user_agent=request.headers.get("User-Agent", "")[:500],
                    extra={"widget": self.widget.publishable_key},
                ),
                now=now,
                double_opt_in=True,  # the key is public: the number's owner confirms by text
                member=member,
            )
        # The same answer whatever the number's state: the widget never tells a visitor
        # whether some number is subscribed.
        return Response(
            {"detail": "Check your phone: reply Y to the text we sent to confirm."},
            status=status.HTTP_202_ACCEPTED,
        )


class WidgetMemberApi(WidgetApi):
    # POST: the signature rides in the body, not in a URL that access logs keep.
    def post(self, request, key: str):
        _customer, member = self.signed_customer(request.data)
        if member is None:
            raise exceptions.NotFound("This customer isn't a member yet.")
        now = timezone.now()
        body = member_body(self.tenant, member, now)
        redemptions = (
            Redemption.objects.filter(tenant=self.tenant, member=member)
            .select_related("reward")
            .order_by("-id")[:RECENT_REDEMPTIONS]
        )
        return Response(
            {
                "first_name": body["first_name"],
                "points_balance": body["points_balance"],
                "points_pending": body["points_pending"],
                "tier": body["tier"],
                "next_tier": body["next_tier"],
                "points_expiring": body["points_expiring"],
                "rewards": [
                    {**reward, "affordable": reward["points_cost"] <= body["points_balance"]}
                    for reward in _rewards(self.tenant)
                ],
                "redemptions": [
                    {
                        "code": r.code,
                        "reward": r.reward.name,
                        "status": r.status,
                        "created_at": r.created_at.isoformat(),
                    }
                    for r in redemptions
                ],
            }
        )


class RedeemSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=255)
    ts = serializers.CharField(max_length=20)
    signature = serializers.CharField(max_length=128)
    reward_id = serializers.IntegerField(min_value=1, max_value=2**62)


class WidgetRedeemApi(WidgetApi):
    throttle_scope = "widget_redeem"

    def post(self, request, key: str):
        serializer = RedeemSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _customer, member = self.signed_customer(serializer.validated_data)
        if member is None:
            raise exceptions.NotFound("This customer isn't a member yet.")
        reward = program_selectors.get_reward(self.tenant, serializer.validated_data["reward_id"])
        now = timezone.now()
        redemption = redemption_create(member=member, reward=reward, now=now)
        return Response(
            {
                "code": redemption.code,
                "reward": reward.name,
                "points_spent": redemption.points_spent,
                "points_balance": member_body(self.tenant, member, now)["points_balance"],
            },
            status=status.HTTP_201_CREATED,
        )
