"""Usage per calendar month in settings: texts handed to the carrier, segments billed, texts
received and the estimated cost — through the real webhook, inbox and dispatcher with the
sandbox carrier; months in the brand's zone; the CSV; roles and the outsider brand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import InboundMessage, OutboundMessage, Subscriber
from messaging.selectors import SENT_STATUSES, usage_by_month
from messaging.services.dispatch import dispatch_due
from messaging.services.inbox import inbox_reply
from messaging.services.setup import messaging_settings_get
from messaging.services.subscribers import Evidence, subscriber_opt_in

from ..conftest import signed_in
from .conftest import Phone

USAGE = reverse("settings_usage")


def conversation(sender, number: str, capture) -> None:
    """A number joins (JOIN, then Y), says hello and gets an answer; every text sent."""
    phone = Phone(number, sender, Client())
    phone.text("JOIN")
    phone.text("Y")
    phone.text("Hello, are you open on Sunday?")
    subscriber = phone_subscriber(sender.tenant, number)
    inbox_reply(subscriber=subscriber, body="Yes, 9 to 5!", actor=None, now=timezone.now())
    with capture(execute=True):
        dispatch_due()


def phone_subscriber(tenant, number: str) -> Subscriber:
    with tenant_scope(tenant):
        return Subscriber.objects.get(phone=number)


def handed_over(tenant) -> list[OutboundMessage]:
    """Independently: texts the carrier took (a failed one only with a carrier id)."""
    with tenant_scope(tenant):
        return [
            m
            for m in OutboundMessage.objects.all()
            if m.status in SENT_STATUSES and (m.status != "failed" or m.carrier_sid)
        ]


def test_this_month_counts_what_the_carrier_took(
    alice_brand, alice_sender, charlie_brand, charlie_sender, django_capture_on_commit_callbacks
):
    tenant = alice_brand.tenant
    conversation(alice_sender, "+12125550141", django_capture_on_commit_callbacks)
    conversation(alice_sender, "+12125550142", django_capture_on_commit_callbacks)
    conversation(charlie_sender, "+12125550143", django_capture_on_commit_callbacks)
    # One the carrier refused before taking it, and one still queued: neither is billed.
    refused = handed_over(tenant)[0]
    OutboundMessage.objects.unscoped().filter(pk=refused.pk).update(
        status="failed", carrier_sid=None
    )
    inbox_reply(
        subscriber=phone_subscriber(tenant, "+12125550141"),
        body="One more thing",
        actor=None,
        now=timezone.now(),
    )
    sent = handed_over(tenant)
    assert len(sent) >= 4  # confirmations, welcome texts and answers, less the refused one
    segments = sum(m.segments for m in sent)
    with tenant_scope(tenant):
        received = InboundMessage.objects.count()
    assert received == 6
    price = messaging_settings_get(tenant).price_per_segment

    response = signed_in(alice_brand.owner).get(USAGE)
    assert response.status_code == 200
    assert response.context["settings_tab"] == "usage"
    months = response.context["months"]
    assert len(months) == 12
    this_month = months[0]
    assert (this_month.messages, this_month.segments, this_month.inbound) == (
        len(sent),
        segments,
        received,
    )
    assert this_month.cost == segments * price
    assert all(m.messages == m.inbound == 0 for m in months[1:])
    html = response.content.decode()
    assert "(so far)" in html and f"{this_month.cost:.2f}" in html
    assert f'href="{USAGE}" aria-current="page">Usage</a>' in html

    # The outsider's page counts the outsider's texts only.
    theirs = signed_in(charlie_brand.owner).get(USAGE)
    assert theirs.context["months"][0].messages == len(handed_over(charlie_sender.tenant))
    assert theirs.context["months"][0].inbound == 3


def test_the_csv_has_a_row_per_month_newest_first(
    alice_brand, alice_sender, django_capture_on_commit_callbacks
):
    tenant = alice_brand.tenant
    conversation(alice_sender, "+12125550151", django_capture_on_commit_callbacks)
    response = signed_in(alice_brand.owner).get(USAGE, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 12
    first = rows[0]
    sent = handed_over(tenant)
    zone = ZoneInfo(tenant.timezone)
    assert first["month"] == timezone.now().astimezone(zone).strftime("%Y-%m")
    assert (first["messages_sent"], first["segments"], first["inbound_messages"]) == (
        str(len(sent)),
        str(sum(m.segments for m in sent)),
        "3",
    )
    assert rows[1]["month"] < first["month"]


def test_months_are_the_brands_calendar_months(
    alice_brand, alice_sender, django_capture_on_commit_callbacks
):
    """A text at 03:00 UTC on July 1 was written on June 30 in New York."""
    tenant = alice_brand.tenant
    assert tenant.timezone == "America/New_York"
    june_30_evening = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
    subscriber = subscriber_opt_in(
        tenant=tenant,
        phone="+12125550161",
        evidence=Evidence(source="import"),
        now=june_30_evening - timedelta(days=1),
        send_confirmation=False,
    )
    inbox_reply(subscriber=subscriber, body="Thanks!", actor=None, now=june_30_evening)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_due(now=lambda: june_30_evening + timedelta(seconds=1))
    sent = handed_over(tenant)  # the answer (and the opt-in's welcome text, the day before)
    zone = ZoneInfo(tenant.timezone)
    assert {m.created_at.astimezone(zone).month for m in sent} == {6}
    assert {m.created_at.month for m in sent} == {6, 7}  # in UTC the answer is July's
    price = messaging_settings_get(tenant).price_per_segment

    months = usage_by_month(
        tenant, price_per_segment=price, now=datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
    )
    assert [m.month for m in months[:2]] == [date(2026, 7, 1), date(2026, 6, 1)]
    assert months[-1].month == date(2025, 8, 1)
    assert months[0].messages == 0
    assert (months[1].messages, months[1].segments) == (len(sent), sum(m.segments for m in sent))
    # A month later the text is still June's; the months before the window are not listed.
    later = usage_by_month(
        tenant, price_per_segment=price, now=datetime(2027, 6, 2, 16, 0, tzinfo=UTC)
    )
    assert later[-1].month == date(2026, 7, 1)
    assert sum(m.messages for m in later) == 0


def test_a_viewer_reads_usage_and_the_outsider_sees_none_of_it(
    alice_brand, alice_sender, vera, charlie_brand, django_capture_on_commit_callbacks
):
    conversation(alice_sender, "+12125550171", django_capture_on_commit_callbacks)
    response = signed_in(vera).get(USAGE)
    assert response.status_code == 200
    assert response.context["months"][0].messages == len(handed_over(alice_brand.tenant))
    outsider = signed_in(charlie_brand.owner).get(USAGE)
    assert outsider.status_code == 200
    assert all(m.messages == m.inbound == 0 for m in outsider.context["months"])
    assert "No texts in the last 12 months" in outsider.content.decode()
    assert "+12125550171" not in outsider.content.decode()
