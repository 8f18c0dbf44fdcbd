"""The storefront REST API of the SMS channel (api.md: SMS subscribers, Messages)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from loyaltysms.pagination import KeysetPagination
from loyaltysms.tenancy.api import TenantAPIView, TenantGenericAPIView
from loyaltysms.tenancy.context import tenant_scope
from messaging import rendering, selectors
from messaging import serializers as s
from messaging.models import ConsentSource, Subscriber, SubscriberStatus
from messaging.services.outbound import CODE_LENGTH, compose, short_url
from messaging.services.setup import brand_name, messaging_settings_get
from messaging.services.subscribers import Evidence, subscriber_opt_in, subscriber_opt_out
from programs import selectors as program_selectors


def _valid(serializer_class, request):
    context = {"request": request, "tenant": request.auth.tenant}
    serializer = serializer_class(data=request.data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def subscriber_body(tenant, subscriber: Subscriber, *, with_consent: bool = True) -> dict:
    subscriber = selectors.get_subscriber_by_id(tenant, subscriber.pk)
    context = {}
    if with_consent:
        with tenant_scope(tenant):
            context["consent"] = list(selectors.consent_history(subscriber))
    return s.SubscriberSerializer(subscriber, context=context).data


class SubscribersApi(TenantGenericAPIView):
    model = Subscriber
    pagination_class = KeysetPagination
    serializer_class = s.SubscriberSerializer

    def scoped_queryset(self, queryset):
        params = self.request.query_params
        wanted = params.get("status", "")
        if wanted and wanted not in SubscriberStatus.values:
            raise serializers.ValidationError(
                {"status": [f"one of {', '.join(SubscriberStatus.values)}"]}
            )
        return selectors.subscriber_search(
            queryset.select_related("member"), status=wanted, source=params.get("source", "")
        )

    @extend_schema(
        operation_id="subscribers_list",
        parameters=[
            OpenApiParameter("status", str, enum=SubscriberStatus.values),
            OpenApiParameter("source", str, enum=ConsentSource.values),
        ],
        responses=s.SubscriberSerializer(many=True),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.SubscriberSerializer(page, many=True).data)

    @extend_schema(
        request=s.SubscriberCreateSerializer,
        responses={201: s.SubscriberSerializer, 200: s.SubscriberSerializer},
    )
    def post(self, request):
        data = _valid(s.SubscriberCreateSerializer, request)
        member = None
        if data["member"]:
            member = program_selectors.get_member(self.tenant, data["member"])
        with tenant_scope(self.tenant):
            existed = Subscriber.objects.filter(phone=data["phone"]).exists()
        subscriber = subscriber_opt_in(
            tenant=self.tenant,
            phone=data["phone"],
            evidence=Evidence(
                source=data["source"],
                disclosure_text=data["consent_text"],
                disclosure_version=data["consent_version"],
                page_url=data["consent_url"],
                ip=data["ip"],
                user_agent=data["user_agent"],
                actor=str(request.user),
            ),
            now=timezone.now(),
            double_opt_in=data["double_opt_in"],
            member=member,
            timezone=data["timezone"],
        )
        return Response(
            subscriber_body(self.tenant, subscriber),
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )


class SubscriberDetailApi(TenantAPIView):
    @extend_schema(responses=s.SubscriberSerializer)
    def get(self, request, phone: str):
        subscriber = selectors.get_subscriber(self.tenant, phone)
        return Response(subscriber_body(self.tenant, subscriber))

    @extend_schema(responses={204: None})
    def delete(self, request, phone: str):
        subscriber = selectors.get_subscriber(self.tenant, phone)
        subscriber_opt_out(
            subscriber=subscriber,
            evidence=Evidence(source=ConsentSource.API, actor=str(request.user)),
            now=timezone.now(),
            confirm=False,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreviewApi(TenantAPIView):
    @extend_schema(
        operation_id="messages_preview",
        request=s.PreviewRequestSerializer,
        responses=s.PreviewSerializer,
    )
    def post(self, request):
        data = _valid(s.PreviewRequestSerializer, request)
        settings = messaging_settings_get(self.tenant)
        values = {**rendering.SAMPLE, "brand": brand_name(self.tenant, settings)}
        if data["member"]:
            member = program_selectors.get_member(self.tenant, data["member"])
            values |= program_selectors.personalization(self.tenant, [member], timezone.now())[
                member.pk
            ]
        placeholder = short_url("x" * CODE_LENGTH)
        rendered = compose(
            data["body"],
            values=values,
            kind=data["kind"],
            settings=settings,
            shorten=lambda url: placeholder,
            smart_encoding=data["smart_encoding"],
        )
        info = rendered.info
        return Response(
            {
                "text": rendered.text,
                "encoding": info.encoding,
                "segments": info.segments,
                "characters": info.characters,
                "unknown_tags": rendering.unknown_tags(data["body"]),
                "price_estimate": str(settings.price_per_segment * info.segments),
                "kind": data["kind"],
            }
        )
