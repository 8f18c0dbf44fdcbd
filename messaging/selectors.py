"""Reads of the SMS channel that more than one caller needs."""

from __future__ import annotations

import phonenumbers
from django.db.models import QuerySet
from django.http import Http404

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import (
    ConsentRecord,
    InboundMessage,
    OutboundMessage,
    Sender,
    Subscriber,
    SubscriberImport,
)


def e164_or_none(value: str, region: str | None) -> str | None:
    """The number in E.164, or None when it can't be one (any format `region` parses)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def get_subscriber(tenant: Tenant, phone: str) -> Subscriber:
    """By number in any format the brand's region parses; the same 404 for "missing" and
    "another brand's"."""
    e164 = e164_or_none(phone, tenant.default_country)
    with tenant_scope(tenant):
        subscriber = (
            Subscriber.objects.select_related("member").filter(phone=e164).first() if e164 else None
        )
    if subscriber is None:
        raise Http404("No such subscriber.")
    return subscriber


def get_subscriber_by_id(tenant: Tenant, subscriber_id: int) -> Subscriber:
    with tenant_scope(tenant):
        subscriber = Subscriber.objects.select_related("member").filter(pk=subscriber_id).first()
    if subscriber is None:
        raise Http404("No such subscriber.")
    return subscriber


def get_subscriber_import(tenant: Tenant, import_id: int) -> SubscriberImport:
    with tenant_scope(tenant):
        job = SubscriberImport.objects.filter(pk=import_id).first()
    if job is None:
        raise Http404("No such import.")
    return job


def get_sender(tenant: Tenant, sender_id: int) -> Sender:
    with tenant_scope(tenant):
        sender = Sender.objects.filter(pk=sender_id).first()
    if sender is None:
        raise Http404("No such sender.")
    return sender


def consent_history(subscriber: Subscriber) -> QuerySet:
    return ConsentRecord.objects.filter(subscriber=subscriber).order_by("id")


def conversation(subscriber: Subscriber, limit: int = 200) -> list:
    """Texts both ways with one subscriber, oldest first (the newest `limit`)."""
    outbound = list(OutboundMessage.objects.filter(subscriber=subscriber).order_by("-id")[:limit])
    inbound = list(InboundMessage.objects.filter(subscriber=subscriber).order_by("-id")[:limit])
    # At the same instant the subscriber's text comes first: our reply answers it.
    keyed = [(m.created_at, 0, m.pk, "in", m) for m in inbound]
    keyed += [(m.created_at, 1, m.pk, "out", m) for m in outbound]
    keyed.sort(key=lambda item: item[:3])
    items = [(direction, at, message) for at, _, _, direction, message in keyed]
    return items[-limit:]


def subscriber_search(queryset: QuerySet, *, status: str = "", source: str = "", q: str = ""):
    if status:
        queryset = queryset.filter(status=status)
    if source:
        queryset = queryset.filter(source=source)
    if q:
        digits = "".join(ch for ch in q if ch.isdigit())
        queryset = queryset.filter(phone__contains=digits) if digits else queryset.none()
    return queryset
