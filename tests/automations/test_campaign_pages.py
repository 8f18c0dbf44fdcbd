"""The campaign pages of the dashboard: the list, the composer (fields, errors beside them,
times in the brand's zone, A/B versions) and its live preview for real recipients, the
confirmation that sends or schedules, the campaign's progress and results, cancel, the CSV,
roles and the outsider brand. State comes from the real services and the dispatcher."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import Campaign, CampaignStatus
from automations.services.campaigns import VariantSpec, campaign_create, campaign_schedule
from automations.services.launch import campaign_launch
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageStatus
from messaging.services.dispatch import dispatch_due
from segments.models import Segment

from ..conftest import signed_in
from .conftest import click, texts_of

BODY = "Hi {first_name|there}! Double points today: {link:https://shop.example/double}"


def _form(audience, **changes) -> dict:
    data = {
        "name": "Double points",
        "segment_ids": [audience.everyone.pk],
        "exclude_segment_ids": [audience.staff.pk],
        "body": BODY,
        "send_mode": "now",
        "holdout_percent": "0",
        "action": "save",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _draft(audience, **fields) -> Campaign:
    fields.setdefault("name", "Double points")
    fields.setdefault("body", BODY)
    fields.setdefault("segment_ids", [audience.everyone.pk])
    fields.setdefault("exclude_segment_ids", [audience.staff.pk])
    return campaign_create(tenant=audience.tenant, now=timezone.now(), **fields)


def _sent(audience, **fields) -> Campaign:
    """Launched now and through the dispatcher (the sandbox takes every text)."""
    campaign = _draft(audience, **fields)
    campaign_schedule(campaign=campaign, now=timezone.now())
    campaign_launch(campaign=campaign, now=timezone.now())
    dispatch_due(now=lambda: timezone.now() + timedelta(seconds=1))
    campaign.refresh_from_db()
    return campaign


@pytest.fixture
def owner(audience, alice_brand):
    return signed_in(alice_brand.owner)


# --- the list -------------------------------------------------------------------------------
def test_the_list_says_what_to_do_when_empty_then_lists_the_brands_campaigns(
    audience, owner, charlie_brand
):
    page = owner.get("/campaigns/").content.decode()
    assert "No campaigns yet" in page and "/campaigns/new/" in page
    mine = _draft(audience, name="Spring sale")
    with tenant_scope(charlie_brand.tenant):
        theirs = campaign_create(
            tenant=charlie_brand.tenant,
            now=timezone.now(),
            name="Charlie's secret",
            body="Hi",
            segment_ids=[Segment.objects.unscoped().filter(tenant=charlie_brand.tenant)[0].pk],
        )
    page = owner.get("/campaigns/").content.decode()
    assert "Spring sale" in page and f"/campaigns/{mine.pk}/" in page
    assert "Charlie" not in page
    assert owner.get(f"/campaigns/{theirs.pk}/").status_code == 404
    assert owner.get(f"/campaigns/{theirs.pk}/stats.csv").status_code == 404
    assert owner.post(f"/campaigns/{theirs.pk}/cancel/", {"confirm": "yes"}).status_code == 404


def test_the_list_costs_the_same_queries_for_3_or_30_campaigns(audience, owner):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner.get("/campaigns/").status_code == 200
        return len(captured)

    for n in range(3):
        _sent(audience, name=f"c{n}") if n == 0 else _draft(audience, name=f"c{n}")
    queries()  # the first page of a session reads and caches a little more
    few = queries()
    for n in range(27):
        _draft(audience, name=f"more{n}")
    assert queries() == few


# --- the composer ---------------------------------------------------------------------------
def test_saving_the_composer_makes_a_draft_with_what_was_typed(audience, owner):
    response = owner.post("/campaigns/new/", _form(audience, smart_sending_hours="24"))
    assert response.status_code == 302
    campaign = Campaign.objects.unscoped().get(tenant=audience.tenant)
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.status == CampaignStatus.DRAFT
    assert campaign.body == BODY and campaign.segment_ids == [audience.everyone.pk]
    assert campaign.exclude_segment_ids == [audience.staff.pk]
    assert campaign.smart_sending_hours == 24 and not campaign.ab_test
    assert texts_of(audience.tenant, campaign) == []  # nothing goes before it is sent


def test_send_at_is_typed_in_the_brands_zone(audience, owner):
    audience.tenant.timezone = "America/New_York"
    audience.tenant.save(update_fields=["timezone"])
    response = owner.post(
        "/campaigns/new/", _form(audience, send_mode="at", send_at="2031-01-15T09:30")
    )
    assert response.status_code == 302
    campaign = Campaign.objects.unscoped().get(tenant=audience.tenant)
    assert campaign.send_at == datetime(2031, 1, 15, 14, 30, tzinfo=UTC)
    page = owner.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert 'value="2031-01-15T09:30"' in page  # shown back as typed


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"body": "Hi {frist_name}"}, "body", "Unknown tag"),
        ({"body": ""}, "body", "Write the message"),
        ({"segment_ids": None}, "segment_ids", "This field is required"),
        ({"send_mode": "at", "send_at": "2001-01-01T10:00"}, "send_at", "That time has passed"),
        ({"send_mode": "at"}, "send_at", "Choose the date and time"),
        ({"send_mode": "local", "local_date": "2031-02-01"}, "local_time", "Choose the local"),
        ({"ab_test": "on", "variant_0": "Only one"}, "ab_test", "at least two versions"),
        ({"holdout_percent": "80"}, "holdout_percent", "less than or equal to 50"),
        ({"name": ""}, "name", "This field is required"),
    ],
)
def test_a_bad_composer_form_shows_the_problem_beside_its_field(
    audience, owner, changes, field, message
):
    response = owner.post("/campaigns/new/", _form(audience, **changes))
    assert response.status_code == 422
    page = response.content.decode()
    assert message in page
    form = response.context["form"]
    assert any(message in e for e in form.errors[field])
    assert not Campaign.objects.unscoped().filter(tenant=audience.tenant).exists()


def test_an_ab_test_keeps_its_versions_by_slot_and_errors_land_on_the_version(audience, owner):
    data = _form(
        audience,
        body="",
        ab_test="on",
        variant_0="Version one {first_name}",
        variant_2="Version three {bad_tag}",
        test_percent="30",
        winner_metric="clicks",
        wait_minutes="60",
    )
    response = owner.post("/campaigns/new/", data)
    assert response.status_code == 422
    assert "Unknown tag" in response.context["form"].errors["variant_2"][0]
    data["variant_2"] = "Version three"
    assert owner.post("/campaigns/new/", data).status_code == 302
    campaign = Campaign.objects.unscoped().get(tenant=audience.tenant)
    assert campaign.ab_test and campaign.test_percent == 30 and campaign.wait_minutes == 60
    with tenant_scope(audience.tenant):
        versions = [(v.label, v.body) for v in campaign.variants.order_by("id")]
    assert versions == [("A", "Version one {first_name}"), ("C", "Version three")]


def test_editing_a_draft_changes_it_and_a_sent_one_cant_be_edited(audience, owner):
    draft = _draft(audience)
    page = owner.get(f"/campaigns/{draft.pk}/edit/").content.decode()
    assert "Double points today" in page
    data = _form(audience, name="Renamed", body="", ab_test="on")
    data |= {"variant_0": "First", "variant_1": "Second"}
    assert owner.post(f"/campaigns/{draft.pk}/edit/", data).status_code == 302
    draft.refresh_from_db()
    assert draft.name == "Renamed" and draft.ab_test
    assert owner.post(f"/campaigns/{draft.pk}/edit/", _form(audience)).status_code == 302
    draft.refresh_from_db()
    assert not draft.ab_test and draft.body == BODY
    with tenant_scope(audience.tenant):
        assert not draft.variants.exists()
    sent = _sent(audience, name="Gone")
    response = owner.get(f"/campaigns/{sent.pk}/edit/")
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{sent.pk}/"


# --- the live preview -----------------------------------------------------------------------
def test_the_preview_counts_the_audience_and_renders_real_recipients_texts(audience, owner):
    response = owner.post("/campaigns/preview/", _form(audience))
    assert response.status_code == 200
    page = response.content.decode()
    found = response.context["preview"]["audience"]
    assert found.count == len(audience.subscribed)  # subscribed, minus staff, each once
    assert len(found.samples) == 3
    newest = sorted(audience.subscribed)[-3:][::-1]
    for sample, subscriber_id in zip(found.samples, newest, strict=True):
        first = audience.first_names[subscriber_id]
        (text,) = sample.texts
        assert text.text.startswith(f"Hi {first or 'there'}! Double points today: http")
        assert "shop.example" not in text.text  # the link in its tracked short form
        assert text.encoding == "GSM-7" and text.segments == 1
        assert text.cost == text.segments * found.price_per_segment
        assert text.text in page.replace("&#x27;", "'")
    assert f">{len(audience.subscribed)}<" in page


def test_the_preview_shows_each_version_encoding_and_segments(audience, owner):
    long_emoji = "🎉 " + "Double points all weekend long, come in and treat yourself. " * 3
    data = _form(audience, body="", ab_test="on", variant_0="Short one", variant_1=long_emoji)
    found = owner.post("/campaigns/preview/", data).context["preview"]["audience"]
    short, long = found.samples[0].texts
    assert (short.label, short.encoding, short.segments) == ("A", "GSM-7", 1)
    assert long.label == "B" and long.encoding == "UCS-2" and long.segments >= 3


def test_the_preview_says_what_is_missing_or_wrong(audience, owner):
    page = owner.post("/campaigns/preview/", _form(audience, segment_ids=None)).content.decode()
    assert "Choose who to send to" in page
    page = owner.post("/campaigns/preview/", _form(audience, body="Hi {nope}")).content.decode()
    assert "Unknown tag" in page


# --- send, progress, results, cancel ------------------------------------------------------
def test_sending_needs_the_confirmation_then_the_page_shows_progress_and_results(audience, owner):
    draft = _draft(audience)
    page = owner.get(f"/campaigns/{draft.pk}/schedule/").content.decode()
    assert f"Yes, send to {len(audience.subscribed)}" in page
    owner.post(f"/campaigns/{draft.pk}/schedule/", {})  # no confirm: nothing happens
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT
    response = owner.post(f"/campaigns/{draft.pk}/schedule/", {"confirm": "yes"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.SCHEDULED
    # The launch task (enqueued on commit) and the dispatcher, as the workers run them:
    campaign_launch(campaign=draft, now=timezone.now())
    page = owner.get(f"/campaigns/{draft.pk}/progress/").content.decode()
    assert "Sending: 0.0 %" in page and 'hx-trigger="every 3s"' in page
    # The heading's status tag comes with each refresh of the bar (htmx out-of-band swap).
    oob = re.search(r'<span id="campaign-status" class="tag (\w+)" hx-swap-oob="true">', page)
    assert oob and oob.group(1) == "sent"  # launched: every text created, page[:300]
    # Inside every recipient's sending window, whatever the hour the test runs at.
    noon = (timezone.now() + timedelta(days=1)).replace(hour=17, minute=0, second=0)
    dispatch_due(now=lambda: noon)
    texts = texts_of(audience.tenant, draft)
    click(audience.tenant, texts[0].subscriber_id, draft)
    cache.clear()  # the progress is cached a few seconds
    response = owner.get(f"/campaigns/{draft.pk}/")
    page = response.content.decode()
    stats = response.context["stats"]
    assert stats.sent == len(audience.subscribed) and stats.unique_clicks == 1
    assert "Done: every text has an outcome" in page and "every 3s" not in page
    assert f"<dd>{stats.sent}</dd>" in page
    rows = dict(
        csv.reader(io.StringIO(owner.get(f"/campaigns/{draft.pk}/stats.csv").content.decode()))
    )
    assert rows["sent"] == str(stats.sent) and rows["unique_clicks"] == "1"


def test_cancel_stops_the_waiting_texts_after_its_confirmation(audience, owner):
    campaign = _draft(audience)
    campaign_schedule(campaign=campaign, now=timezone.now())
    campaign_launch(campaign=campaign, now=timezone.now())  # created, not yet dispatched
    assert "Yes, cancel it" in owner.get(f"/campaigns/{campaign.pk}/cancel/").content.decode()
    response = owner.post(f"/campaigns/{campaign.pk}/cancel/", {"confirm": "yes"}, follow=True)
    assert f"{len(audience.subscribed)} texts not yet sent were stopped" in (
        response.content.decode()
    )
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELED
    assert {t.status for t in texts_of(audience.tenant, campaign)} == {MessageStatus.CANCELED}
    again = owner.post(f"/campaigns/{campaign.pk}/cancel/", {"confirm": "yes"}, follow=True)
    assert "nothing to stop" in again.content.decode()


def test_ab_results_show_each_versions_score_and_the_winner(audience, owner):
    campaign = _draft(
        audience,
        body="",
        variants=[VariantSpec("A", "Plain {link:https://a.example}"), VariantSpec("B", "Fancy")],
        test_percent=50,
        wait_minutes=1,
    )
    campaign_schedule(campaign=campaign, now=timezone.now())
    campaign_launch(campaign=campaign, now=timezone.now())
    page = owner.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Version A" in page and "Version B" in page and "waiting" in page


# --- roles ----------------------------------------------------------------------------------
def test_a_viewer_reads_campaigns_but_cannot_compose_send_or_cancel(audience, vera):
    campaign = _draft(audience)
    viewer = signed_in(vera)
    assert viewer.get("/campaigns/").status_code == 200
    assert viewer.get(f"/campaigns/{campaign.pk}/").status_code == 200
    assert viewer.get("/campaigns/new/").status_code == 403
    assert viewer.post(f"/campaigns/{campaign.pk}/schedule/", {"confirm": "yes"}).status_code == 403
    assert viewer.post(f"/campaigns/{campaign.pk}/cancel/", {"confirm": "yes"}).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
