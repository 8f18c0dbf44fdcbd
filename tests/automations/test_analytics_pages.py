"""The analytics page and its CSVs: the brand's figures for a period (texts sent through the
sandbox carrier, clicks on the real tracked links, orders through the real order service and
the attribution scan), the campaigns table, bad periods, roles, the outsider brand, and a
query count that does not grow with the data."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from automations import stats
from automations.services.launch import campaign_launch
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentRecord
from messaging.services.dispatch import dispatch_due
from messaging.services.setup import messaging_changed, messaging_settings_get
from messaging.services.status import sandbox_receipts_deliver
from messaging.services.subscribers import Evidence, subscriber_opt_out
from programs.services.program import settings_changed

from ..conftest import signed_in
from .conftest import NOON, click, subscriber, texts_of
from .test_attribution import (
    SALE,
    launched,
    members_only,
    order,
    outsider_campaign,
    scan,
    sent_and_delivered,
)
from .test_campaigns import make_campaign

PAGE = reverse("analytics")
SUMMARY_CSV = reverse("analytics_summary_csv")
DAILY_CSV = reverse("analytics_daily_csv")
# The campaign's texts are created at NOON (June 10, in New York).
JUNE = {"period": "custom", "start": "2026-06-01", "end": "2026-06-30"}
LAST_WEEK = {"period": "7"}  # the order is placed now


@pytest.fixture
def june_sale(audience, django_capture_on_commit_callbacks):
    """Alice's campaign: sent and delivered, one click that led to an order of 120.00 now,
    one opt-out an hour after the texts."""
    tenant = audience.tenant
    campaign = launched(audience, name="June sale")
    sent_and_delivered(django_capture_on_commit_callbacks, campaign)
    buyer, quitter = members_only(audience, audience.subscribed)[:2]
    click(tenant, buyer, campaign)
    order(tenant, buyer, timezone.now() + timedelta(minutes=1), subtotal="120.00")
    subscriber_opt_out(
        subscriber=subscriber(tenant, quitter),
        evidence=Evidence(source="keyword"),
        now=NOON + timedelta(hours=1),
        confirm=False,
    )
    scan(tenant)
    return campaign


def card(response, label: str) -> dict:
    return next(c for c in response.context["cards"] if c["label"] == label)


def test_the_page_shows_the_periods_figures(audience, june_sale, alice_client):
    tenant = audience.tenant
    texts = texts_of(tenant, june_sale)
    statuses = Counter(t.status for t in texts)
    price = messaging_settings_get(tenant).price_per_segment
    cost = sum(t.segments for t in texts) * price

    response = alice_client.get(PAGE, JUNE)
    assert response.status_code == 200
    assert response.context["analytics_tab"] is True
    html = response.content.decode()
    figures = response.context["figures"]
    assert (figures.sent, figures.delivered) == (len(texts), statuses["delivered"])
    assert (figures.unique_clicks, figures.opt_outs) == (1, 1)
    assert card(response, "Sent")["value"] == str(len(texts))
    delivered = card(response, "Delivered")
    assert delivered["value"] == str(statuses["delivered"])
    assert f"{statuses['delivered'] / len(texts) * 100:.1f}% delivery rate" in delivered["sub"]
    assert f"{100 / statuses['delivered']:.1f}% of delivered (CTR)" in html
    assert card(response, "Opt-outs")["value"] == "1"
    assert card(response, "Cost")["value"] == f"{cost:,.2f} USD"
    assert f"{cost:,.2f} USD" in html
    # List growth in June: the opt-out only (everyone joined in May).
    assert card(response, "List growth")["value"] == "-1"
    # The campaigns table links to the campaign.
    assert "June sale" in html
    assert reverse("campaign_detail", args=[june_sale.pk]) in html
    # The charts read every day of June from the embedded JSON.
    data = json.loads(html.split('id="analytics-daily" type="application/json">')[1].split("<")[0])
    assert len(data["day"]) == 30 and data["day"][0] == "2026-06-01"
    assert data["sent"][9] == len(texts)  # June 10
    assert sum(data["opt_outs"]) == 1
    assert "chart-4.6.1.umd.min.js" in html and "js/analytics.js" in html
    assert 'role="img"' in html and "<details" in html  # each chart's text alternative
    # CSV links for the same period.
    assert f"{SUMMARY_CSV}?period=custom&amp;start=2026-06-01&amp;end=2026-06-30" in html

    # The order was placed now: it counts in the period that holds today.
    response = alice_client.get(PAGE, LAST_WEEK)
    assert response.status_code == 200
    assert card(response, "Attributed orders")["value"] == "1"
    assert card(response, "Revenue")["value"] == "120.00 USD"
    assert "120.00 USD" in response.content.decode()


def test_summary_and_daily_csv(audience, june_sale, alice_client):
    tenant = audience.tenant
    texts = texts_of(tenant, june_sale)
    response = alice_client.get(SUMMARY_CSV, JUNE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "analytics-summary-2026-06-01-2026-06-30.csv" in response["Content-Disposition"]
    rows = dict(csv.reader(io.StringIO(response.content.decode())))
    assert rows["metric"] == "value"
    assert rows["sent"] == str(len(texts))
    assert (rows["unique_clicks"], rows["opt_outs"]) == ("1", "1")

    rows = dict(csv.reader(io.StringIO(alice_client.get(SUMMARY_CSV, LAST_WEEK).content.decode())))
    assert (rows["attributed_orders"], rows["revenue"]) == ("1", "120.00")

    response = alice_client.get(DAILY_CSV, {**JUNE, "start": "2026-05-01"})
    assert response.status_code == 200
    daily = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(daily[0]) == list(stats.DAILY_COLUMNS)
    by_day = {row["day"]: row for row in daily}
    assert by_day["2026-06-10"]["sent"] == str(len(texts))
    with tenant_scope(tenant):
        actions = Counter(ConsentRecord.objects.values_list("action", flat=True))
    joined = actions["opt_in"] + actions["opt_in_confirmed"] + actions["imported"]
    assert sum(int(row["subscribed"]) for row in daily) == joined > 0
    assert sum(int(row["opt_outs"]) for row in daily) == actions["opt_out"]


@pytest.mark.parametrize(
    "params, error",
    [
        ({"period": "custom", "start": "2026-13-01", "end": "2026-06-30"}, "valid date"),
        ({"period": "custom", "start": "2026-06-30", "end": "2026-06-01"}, "before the start"),
        ({"period": "custom", "start": "2026-06-01"}, "Give both dates"),
        ({"period": "custom", "start": "2024-01-01", "end": "2026-06-01"}, "at most 366 days"),
        ({"period": "365"}, "Choose one of the periods"),
    ],
)
def test_a_bad_period_is_a_form_error_not_a_crash(alice_client, params, error):
    response = alice_client.get(PAGE, params)
    assert response.status_code == 400
    assert error in response.content.decode()
    for url in (SUMMARY_CSV, DAILY_CSV):
        response = alice_client.get(url, params)
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/plain")


def test_nothing_yet_says_what_to_do_next(alice_client):
    response = alice_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing in this period yet" in html
    assert reverse("campaign_new") in html and reverse("subscribers_import") in html
    assert "analytics-daily" not in html  # no empty charts


def test_a_viewer_reads_the_page_and_the_csvs(audience, june_sale, vera):
    client = signed_in(vera)
    response = client.get(PAGE, JUNE)
    assert response.status_code == 200
    assert "June sale" in response.content.decode()
    for url in (SUMMARY_CSV, DAILY_CSV):
        assert client.get(url, JUNE).status_code == 200


def test_the_outsider_sees_only_their_own_figures(audience, june_sale, charlie_brand):
    theirs = outsider_campaign(charlie_brand)
    client = signed_in(charlie_brand.owner)
    response = client.get(PAGE, JUNE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "June sale" not in html
    assert reverse("campaign_detail", args=[june_sale.pk]) not in html
    assert reverse("campaign_detail", args=[theirs.pk]) in html
    figures = response.context["figures"]
    assert figures.sent == 0  # the outsider's texts are queued, not sent
    assert (figures.unique_clicks, figures.opt_outs) == (0, 0)
    rows = dict(csv.reader(io.StringIO(client.get(SUMMARY_CSV, LAST_WEEK).content.decode())))
    assert (rows["attributed_orders"], rows["revenue"]) == ("0", "0")


def page_queries(client, tenant) -> int:
    # Settings and program are cached per process for a few seconds: start cold each time.
    messaging_changed(tenant)
    settings_changed(tenant)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(PAGE, JUNE)
    assert response.status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow_with_the_data(
    audience, june_sale, alice_client, django_capture_on_commit_callbacks
):
    tenant = audience.tenant
    alice_client.get(PAGE)  # the first visit stores the brand in the session
    few = page_queries(alice_client, tenant)
    more = []
    for n in range(1, 4):  # a day apart: the frequency cap lets each one text everybody
        moment = NOON + timedelta(days=n)
        campaign = make_campaign(audience, now=moment, body=SALE, name=f"More {n}")
        campaign_launch(campaign=campaign, now=moment)
        with django_capture_on_commit_callbacks(execute=True):
            dispatch_due(now=lambda moment=moment: moment + timedelta(seconds=1))
        more.append(campaign)
    sandbox_receipts_deliver(until=time.time() + 3600)
    for campaign in more:
        for text in texts_of(tenant, campaign)[:3]:
            click(tenant, text.subscriber_id, campaign)
    many = page_queries(alice_client, tenant)
    response = alice_client.get(PAGE, JUNE)
    assert len(response.context["campaigns"]) == 4
    # The table's grouped figures are each campaign's own.
    for row in response.context["campaigns"]:
        own = stats.campaign_stats(tenant, row["campaign"])
        assert row["figures"] == own
        assert own.sent > 0
    assert response.context["figures"].unique_clicks > 1
    assert many == few
