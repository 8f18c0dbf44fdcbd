"""The storefront REST API of the loyalty engine (api.md: Members and points, Orders, Rewards).

Views validate with a serializer, call one service, and render with the output serializers.
Every object is fetched through a selectors.get_* helper (404 for missing and for another
brand's alike) or a TenantGenericAPIView queryset.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from loyaltysms.pagination import KeysetPagination, NewestFirstPagination
from loyaltysms.tenancy.api import TenantAPIView, TenantGenericAPIView
from loyaltysms.tenancy.context import tenant_scope
from programs import selectors
from programs import serializers as s
from programs.models import Member, MultiplierEvent, PointsEntry, Redemption, Reward, Tier
from programs.services import members as member_services
from programs.services import orders as order_services
from programs.services import program as program_services
from programs.services import rewards as reward_services


def member_bodies(tenant, members, now=None) -> list[dict]:
    members = list(members)
    context = {
        "tenant": tenant,
        "member_context": selectors.member_context(tenant, members, now or timezone.now()),
    }
    return s.MemberSerializer(members, many=True, context=context).data


def member_body(tenant, member: Member, now=None) -> dict:
    member = selectors.get_member_by_id(tenant, member.pk)  # fresh, with its tier
    return member_bodies(tenant, [member], now)[0]


def stored_json(content, status_code: int) -> HttpResponse:
    """A response kept byte for byte, so a replay is identical to the first answer."""
    return HttpResponse(bytes(content), status=status_code, content_type="application/json")


def _valid(serializer_class, request, **context):
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


MEMBER_FILTERS = [
    OpenApiParameter("q", str, description="Words matching name, email, phone or external id"),
    OpenApiParameter("phone", str, description="Exact phone, any format the region parses"),
    OpenApiParameter("email", str, description="Exact email, any case"),
    OpenApiParameter("tier", int, description="Tier id"),
]


class MembersApi(TenantGenericAPIView):
    model = Member
    pagination_class = KeysetPagination
    serializer_class = s.MemberSerializer

    def scoped_queryset(self, queryset):
        params = self.request.query_params
        phone = params.get("phone", "").strip()
        if phone:
            try:
                phone = s.parse_phone(phone, self.tenant.default_country)
            except serializers.ValidationError as error:
                raise serializers.ValidationError({"phone": error.detail}) from None
        tier = params.get("tier", "")
        if tier and not tier.isdigit():
            raise serializers.ValidationError({"tier": ["a tier id"]})
        return selectors.member_search(
            queryset.select_related("tier"),
            q=params.get("q", "")[:200],
            phone=phone,
            email=params.get("email", "").strip(),
            tier_id=int(tier) if tier else None,
        )

    @extend_schema(
        operation_id="members_list",
        parameters=MEMBER_FILTERS,
        responses=s.MemberSerializer(many=True),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(member_bodies(self.tenant, page))

    @extend_schema(
        request=s.MemberUpsertSerializer,
        responses={201: s.MemberSerializer, 200: s.MemberSerializer},
    )
    def post(self, request):
        data = dict(_valid(s.MemberUpsertSerializer, request, tenant=self.tenant))
        now = timezone.now()
        result = member_services.member_upsert(tenant=self.tenant, now=now, **data)
        return Response(
            member_body(self.tenant, result.member, now),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class MemberDetailApi(TenantAPIView):
    @extend_schema(responses=s.MemberSerializer)
    def get(self, request, external_id: str):
        member = selectors.get_member(self.tenant, external_id)
        return Response(member_bodies(self.tenant, [member])[0])


class MemberLedgerApi(TenantGenericAPIView):
    model = PointsEntry
    pagination_class = NewestFirstPagination
    serializer_class = s.LedgerEntrySerializer

    def scoped_queryset(self, queryset):
        member = selectors.get_member(self.tenant, self.kwargs["external_id"])
        return queryset.filter(member=member).select_related("actor")

    @extend_schema(operation_id="members_ledger_list", responses=s.LedgerEntrySerializer(many=True))
    def get(self, request, external_id: str):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.LedgerEntrySerializer(page, many=True).data)


class MemberAdjustmentsApi(TenantAPIView):
    @extend_schema(request=s.AdjustmentSerializer, responses={201: s.LedgerEntrySerializer})
    def post(self, request, external_id: str):
        member = selectors.get_member(self.tenant, external_id)
        data = _valid(s.AdjustmentSerializer, request)
        entry = member_services.points_adjust(
            member=member, points=data["points"], reason=data["reason"], now=timezone.now()
        )
        return Response(s.LedgerEntrySerializer(entry).data, status=status.HTTP_201_CREATED)


class MemberRedemptionsApi(TenantGenericAPIView):
    model = Redemption
    pagination_class = NewestFirstPagination
    serializer_class = s.RedemptionSerializer

    def scoped_queryset(self, queryset):
        member = selectors.get_member(self.tenant, self.kwargs["external_id"])
        return queryset.filter(member=member).select_related("reward")

    @extend_schema(
        operation_id="members_redemptions_list", responses=s.RedemptionSerializer(many=True)
    )
    def get(self, request, external_id: str):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RedemptionSerializer(page, many=True).data)

    @extend_schema(request=s.RedeemSerializer, responses={201: s.RedemptionResultSerializer})
    def post(self, request, external_id: str):
        member = selectors.get_member(self.tenant, external_id)
        data = _valid(s.RedeemSerializer, request)
        reward = selectors.get_reward(self.tenant, data["reward_id"])
        now = timezone.now()
        redemption = reward_services.redemption_create(member=member, reward=reward, now=now)
        body = {
            "redemption_id": redemption.pk,
            "code": redemption.code,
            "points_spent": redemption.points_spent,
            "member": member_body(self.tenant, member, now),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class RedemptionDetailApi(TenantAPIView):
    @extend_schema(responses=s.RedemptionSerializer)
    def get(self, request, redemption_id: int):
        redemption = selectors.get_redemption(self.tenant, redemption_id)
        return Response(s.RedemptionSerializer(redemption).data)


class RedemptionUseApi(TenantAPIView):
    @extend_schema(request=s.RedemptionUseSerializer, responses=s.RedemptionSerializer)
    def post(self, request, redemption_id: int):
        redemption = selectors.get_redemption(self.tenant, redemption_id)
        data = _valid(s.RedemptionUseSerializer, request)
        redemption = reward_services.redemption_use(
            redemption=redemption, now=timezone.now(), order_id=data.get("order_id", "")
        )
        return Response(s.RedemptionSerializer(redemption).data)


class RedemptionCancelApi(TenantAPIView):
    @extend_schema(request=s.RedemptionCancelSerializer, responses=s.RedemptionSerializer)
    def post(self, request, redemption_id: int):
        redemption = selectors.get_redemption(self.tenant, redemption_id)
        data = _valid(s.RedemptionCancelSerializer, request)
        redemption = reward_services.redemption_cancel(
            redemption=redemption, now=timezone.now(), reason=data.get("reason", "")
        )
        return Response(s.RedemptionSerializer(redemption).data)


class OrdersApi(TenantAPIView):
    @extend_schema(
        request=s.OrderSerializer,
        responses={201: s.OrderResultSerializer, 200: s.OrderResultSerializer},
    )
    def post(self, request):
        data = _valid(s.OrderSerializer, request)
        now = timezone.now()
        program = program_services.program_get(self.tenant)

        def respond(order, qualifying_value=None, new_lot=None) -> bytes:
            member = order.member
            context = selectors.member_context(
                self.tenant,
                [member],
                now,
                qualifying=None if qualifying_value is None else {member.pk: qualifying_value},
                unsaved_lots=[new_lot] if new_lot else [],
            )
            body = {
                "order_id": order.order_id,
                "points_awarded": order.points_awarded,
                "points_pending": selectors.order_is_pending(order, program),
                "member": s.MemberSerializer(
                    member, context={"tenant": self.tenant, "member_context": context}
                ).data,
            }
            return JSONRenderer().render(body)

        recorded = order_services.order_record(
            tenant=self.tenant,
            order_id=data["order_id"],
            member_external_id=data["member"],
            subtotal=data["subtotal"],
            currency=data["currency"],
            placed_at=data.get("placed_at"),
            now=now,
            respond=respond,
        )
        order = recorded.order
        if order.response is None:  # recorded without the API (an import): answer afresh
            order.response = respond(order)
        return stored_json(order.response, 201 if recorded.created else 200)


class OrderRefundsApi(TenantAPIView):
    @extend_schema(
        request=s.RefundSerializer,
        responses={201: s.RefundResultSerializer, 200: s.RefundResultSerializer},
    )
    def post(self, request, order_id: str):
        order = selectors.get_order(self.tenant, order_id)
        data = _valid(s.RefundSerializer, request)
        now = timezone.now()
        with transaction.atomic():
            recorded = order_services.refund_record(
                order=order, refund_id=data["refund_id"], amount=data["amount"], now=now
            )
            refund = recorded.refund
            if not recorded.created and refund.response is not None:
                return stored_json(refund.response, status.HTTP_200_OK)
            body = {
                "refund_id": refund.refund_id,
                "points_reversed": refund.points_reversed,
                "points_unrecovered": refund.points_unrecovered,
                "member": member_body(self.tenant, order.member, now),
            }
            content = JSONRenderer().render(body)
            order_services.refund_store_response(refund=refund, body=content)
        return stored_json(content, 201 if recorded.created else 200)


class RewardsApi(TenantGenericAPIView):
    model = Reward
    pagination_class = KeysetPagination
    serializer_class = s.RewardSerializer

    @extend_schema(operation_id="rewards_list", responses=s.RewardSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RewardSerializer(page, many=True).data)

    @extend_schema(request=s.RewardSerializer, responses={201: s.RewardSerializer})
    def post(self, request):
        data = dict(_valid(s.RewardSerializer, request))
        active = data.pop("active", True)
        reward = program_services.reward_create(tenant=self.tenant, **data)
        if not active:
            reward = program_services.reward_update(reward=reward, active=False)
        return Response(s.RewardSerializer(reward).data, status=status.HTTP_201_CREATED)


class RewardDetailApi(TenantAPIView):
    @extend_schema(responses=s.RewardSerializer)
    def get(self, request, reward_id: int):
        return Response(s.RewardSerializer(selectors.get_reward(self.tenant, reward_id)).data)

    @extend_schema(request=s.RewardUpdateSerializer, responses=s.RewardSerializer)
    def patch(self, request, reward_id: int):
        reward = selectors.get_reward(self.tenant, reward_id)
        data = _valid(s.RewardUpdateSerializer, request)
        reward = program_services.reward_update(reward=reward, **data)
        return Response(s.RewardSerializer(reward).data)


def program_body(tenant) -> dict:
    program = program_services.program_get(tenant)
    with tenant_scope(tenant):
        shape = {field: getattr(program, field) for field in program_services.PROGRAM_FIELDS}
        shape.update(
            currency=program.currency,
            tiers=list(Tier.objects.order_by("threshold")),
            rewards=list(selectors.program_rewards(active_only=True)),
            multiplier_events=list(MultiplierEvent.objects.all()),
        )
    return s.ProgramSerializer(shape).data


class ProgramApi(TenantAPIView):
    @extend_schema(responses=s.ProgramSerializer)
    def get(self, request):
        return Response(program_body(self.tenant))

    @extend_schema(request=s.ProgramSerializer, responses=s.ProgramSerializer)
    def patch(self, request):
        data = _valid(s.ProgramSerializer, request)
        program = program_services.program_get(self.tenant)
        program_services.program_update(program=program, **data)
        return Response(program_body(self.tenant))


class TiersApi(TenantGenericAPIView):
    model = Tier
    pagination_class = KeysetPagination
    serializer_class = s.TierSerializer

    @extend_schema(operation_id="tiers_list", responses=s.TierSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TierSerializer(page, many=True).data)

    @extend_schema(request=s.TierSerializer, responses={201: s.TierSerializer})
    def post(self, request):
        data = _valid(s.TierSerializer, request)
        tier = program_services.tier_create(tenant=self.tenant, **data)
        return Response(s.TierSerializer(tier).data, status=status.HTTP_201_CREATED)


class TierDetailApi(TenantAPIView):
    @extend_schema(responses=s.TierSerializer)
    def get(self, request, tier_id: int):
        return Response(s.TierSerializer(selectors.get_tier(self.tenant, tier_id)).data)

    @extend_schema(request=s.TierSerializer(partial=True), responses=s.TierSerializer)
    def patch(self, request, tier_id: int):
        tier = selectors.get_tier(self.tenant, tier_id)
        serializer = s.TierSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tier = program_services.tier_update(tier=tier, **serializer.validated_data)
        return Response(s.TierSerializer(tier).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tier_id: int):
        program_services.tier_delete(tier=selectors.get_tier(self.tenant, tier_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MultiplierEventsApi(TenantGenericAPIView):
    model = MultiplierEvent
    pagination_class = NewestFirstPagination
    serializer_class = s.MultiplierEventSerializer

    @extend_schema(
        operation_id="multiplier_events_list", responses=s.MultiplierEventSerializer(many=True)
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MultiplierEventSerializer(page, many=True).data)

    @extend_schema(
        request=s.MultiplierEventSerializer, responses={201: s.MultiplierEventSerializer}
    )
    def post(self, request):
        data = dict(_valid(s.MultiplierEventSerializer, request))
        tier_id = data.pop("tier_id", None)
        tier = selectors.get_tier(self.tenant, tier_id) if tier_id else None
        event = program_services.multiplier_event_create(tenant=self.tenant, tier=tier, **data)
        return Response(s.MultiplierEventSerializer(event).data, status=status.HTTP_201_CREATED)


class MultiplierEventDetailApi(TenantAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request, event_id: int):
        event = selectors.get_multiplier_event(self.tenant, event_id)
        program_services.multiplier_event_delete(event=event)
        return Response(status=status.HTTP_204_NO_CONTENT)
