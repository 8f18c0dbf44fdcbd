"""Request and response bodies of the SMS API (api.md: SMS subscribers, Messages)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from loyaltysms.models import validate_timezone
from messaging.models import ConsentSource, SubscriberStatus
from programs.serializers import PhoneField, iso

OPT_IN_SOURCES = [
    ConsentSource.WEB_FORM,
    ConsentSource.CHECKOUT,
    ConsentSource.API,
    ConsentSource.LOYALTY_PAGE,
    ConsentSource.KEYWORD,
    ConsentSource.IMPORT,
]


class SubscriberCreateSerializer(serializers.Serializer):
    phone = PhoneField()
    source = serializers.ChoiceField(choices=[(s.value, s.label) for s in OPT_IN_SOURCES])
    consent_text = serializers.CharField(
        max_length=5000, help_text="The exact disclosure the person agreed to"
    )
    consent_version = serializers.CharField(max_length=40, required=False, default="")
    consent_url = serializers.URLField(max_length=2000, required=False, default="")
    ip = serializers.IPAddressField(required=False, allow_null=True, default=None)
    user_agent = serializers.CharField(max_length=500, required=False, default="")
    member = serializers.CharField(
        max_length=255, required=False, allow_null=True, default=None,
        help_text="The member's external_id",
    )  # fmt: skip
    double_opt_in = serializers.BooleanField(required=False, default=True)
    timezone = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        help_text="IANA zone (America/Chicago) when known; otherwise it comes from the number",
    )

    def validate_timezone(self, value: str) -> str:
        if value:
            try:
                validate_timezone(value)
            except DjangoValidationError as error:
                raise serializers.ValidationError(error.messages) from None
        return value


class ConsentRecordSerializer(serializers.Serializer):
    action = serializers.CharField()
    source = serializers.CharField()
    created_at = serializers.CharField()
    disclosure_text = serializers.CharField()
    disclosure_version = serializers.CharField()
    page_url = serializers.CharField()
    ip = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    keyword = serializers.CharField()
    message_body = serializers.CharField()
    confirmation_text = serializers.CharField()
    evidence = serializers.DictField()

    def to_representation(self, record):
        return {
            "action": record.action,
            "source": record.source,
            "created_at": iso(record.created_at),
            "disclosure_text": record.disclosure_text,
            "disclosure_version": record.disclosure_version,
            "page_url": record.page_url,
            "ip": record.ip,
            "user_agent": record.user_agent,
            "keyword": record.keyword,
            "message_body": record.message_body,
            "confirmation_text": record.confirmation_text,
            "evidence": record.evidence,
        }


class SubscriberSerializer(serializers.Serializer):
    phone = serializers.CharField()
    status = serializers.ChoiceField(choices=SubscriberStatus.choices)
    source = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    region = serializers.CharField()
    member = serializers.CharField(allow_null=True)
    subscribed_at = serializers.CharField(allow_null=True)
    unsubscribed_at = serializers.CharField(allow_null=True)
    created_at = serializers.CharField()
    consent = ConsentRecordSerializer(many=True, required=False)

    def to_representation(self, subscriber):
        body = {
            "phone": subscriber.e164,
            "status": subscriber.status,
            "source": subscriber.source,
            "timezone": subscriber.timezone or None,
            "region": subscriber.region,
            "member": subscriber.member.external_id if subscriber.member_id else None,
            "subscribed_at": iso(subscriber.subscribed_at),
            "unsubscribed_at": iso(subscriber.unsubscribed_at),
            "created_at": iso(subscriber.created_at),
        }
        consent = self.context.get("consent")
        if consent is not None:
            body["consent"] = ConsentRecordSerializer(consent, many=True).data
        return body


class PreviewRequestSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=5000, trim_whitespace=False)
    member = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)
    kind = serializers.ChoiceField(
        choices=["marketing", "transactional"], required=False, default="marketing"
    )
    smart_encoding = serializers.BooleanField(required=False, default=False)


class PreviewSerializer(serializers.Serializer):
    text = serializers.CharField()
    encoding = serializers.ChoiceField(choices=["GSM-7", "UCS-2"])
    segments = serializers.IntegerField()
    characters = serializers.IntegerField()
    unknown_tags = serializers.ListField(child=serializers.CharField())
    price_estimate = serializers.CharField()
