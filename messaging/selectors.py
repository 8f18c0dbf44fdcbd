"""Reads of the SMS channel that more than one caller needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import phonenumbers
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import (
    ConsentRecord,
    InboundMessage,
    MessageStatus,
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


# --- usage ----------------------------------------------------------------------------------

# Handed to the carrier (and so paid for): sent, with a receipt, or with an unknown outcome. A
# `failed` text without a carrier id never was (refused before sending, or given up on after
# retries). Campaign figures (automations/stats.py) count "sent" by the same rule.
SENT_STATUSES = (
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.FAILED,
    MessageStatus.UNKNOWN,
)
HANDED_OVER = "o.status = ANY(%(sent)s) AND (o.status <> 'failed' OR o.carrier_sid IS NOT NULL)"

# Per calendar month in the brand's zone, in [start, end) (months' first instants there). A text
# counts in the month it was created, as on the analytics page; the range reads the
# (tenant, created_at) index.
USAGE_OUTBOUND = """
SELECT (date_trunc('month', o.created_at AT TIME ZONE %(zone)s))::date AS month,
       count(*), coalesce(sum(o.segments), 0)
FROM messaging_outboundmessage o
WHERE o.tenant_id = %(tenant)s AND o.created_at >= %(start)s AND o.created_at < %(end)s
  AND {handed_over}
GROUP BY 1
""".replace("{handed_over}", HANDED_OVER)
USAGE_INBOUND = """
SELECT (date_trunc('month', i.created_at AT TIME ZONE %(zone)s))::date AS month, count(*)
FROM messaging_inboundmessage i
WHERE i.tenant_id = %(tenant)s AND i.created_at >= %(start)s AND i.created_at < %(end)s
GROUP BY 1
"""


@dataclass(frozen=True)
class MonthUsage:
    month: date  # the first day
    messages: int  # outbound texts handed to the carrier
    segments: int  # what the carrier bills
    inbound: int
    cost: Decimal  # segments × the brand's price per segment


def _month_starts(today: date, months: int) -> list[date]:
    """The first days of the last `months` months up to today's, newest first."""
    firsts, year, month = [], today.year, today.month
    for _ in range(months):
        firsts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return firsts


def usage_by_month(
    tenant: Tenant, *, price_per_segment: Decimal, now: datetime, months: int = 12
) -> list[MonthUsage]:
    """The brand's texts per calendar month in its time zone, newest first: the last `months`
    months, this one so far first, every month listed (zeros for a quiet one). Two grouped
    queries whatever the volume."""
    zone = ZoneInfo(tenant.timezone)
    firsts = _month_starts(now.astimezone(zone).date(), months)
    oldest, newest = firsts[-1], firsts[0]
    after = date(newest.year + newest.month // 12, newest.month % 12 + 1, 1)
    params = {
        "tenant": tenant.pk,
        "zone": tenant.timezone,
        "start": datetime(oldest.year, oldest.month, 1, tzinfo=zone),
        "end": datetime(after.year, after.month, 1, tzinfo=zone),
        "sent": [s.value for s in SENT_STATUSES],
    }
    with connection.cursor() as cursor:
        cursor.execute(USAGE_OUTBOUND, params)
        outbound = {month: (n, segments) for month, n, segments in cursor.fetchall()}
        cursor.execute(USAGE_INBOUND, params)
        inbound = dict(cursor.fetchall())
    usage = []
    for first in firsts:
        messages, segments = outbound.get(first, (0, 0))
        usage.append(
            MonthUsage(
                month=first,
                messages=messages,
                segments=segments,
                inbound=inbound.get(first, 0),
                cost=(segments * price_per_segment).quantize(Decimal("0.00001")),
            )
        )
    return usage
