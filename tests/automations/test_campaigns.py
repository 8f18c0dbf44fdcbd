"""Campaign launch: the frozen audience, each text exactly once (twice launched, a worker dying
mid-launch), personalization, send modes, smart sending, holdout, cancel, and the dispatcher's
gate (consent, quiet hours, caps) on the texts made."""

from __future__ import annotations

from collections import Counter
from datetime import date, time, timedelta

import pytest
from django.http import Http404

from automations.models import Campaign, CampaignStatus, RecipientGroup
from automations.selectors import campaign_progress, get_campaign
from automations.services.campaigns import (
    CampaignInvalid,
    CampaignNotEditable,
    campaign_cancel,
    campaign_create,
    campaign_schedule,
    campaign_update,
)
from automations.services.launch import campaign_advance, campaign_launch, campaigns_due
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageKind, OutboundMessage
from messaging.services.dispatch import dispatch_due
from messaging.services.outbound import message_create
from messaging.services.subscribers import Evidence, subscriber_opt_out

from .conftest import NOON, recipients_of, subscriber, texts_of

BODY = "Hi {first_name|there}, you have {points_balance|no} points. Double points today!"


def make_campaign(audience, *, now=NOON, schedule=True, **fields):
    fields.setdefault("name", "Double points")
    fields.setdefault("body", BODY)
    fields.setdefault("segment_ids", [audience.everyone.pk])
    fields.setdefault("exclude_segment_ids", [audience.staff.pk])
    campaign = campaign_create(tenant=audience.tenant, now=now - timedelta(hours=1), **fields)
    if schedule:
        campaign_schedule(campaign=campaign, now=now - timedelta(minutes=30))
    return campaign


def assert_counters_add_up(campaign, texts):
    campaign.refresh_from_db()
    progress = campaign_progress(campaign)
    assert progress.created == len(texts) == campaign.created_count
    assert progress.audience == campaign.audience_count
    assert campaign.audience_count == (
        campaign.created_count + campaign.holdout_count + campaign.skipped_count
    )
    assert sum(progress.statuses.values()) == progress.created
    assert Counter(t.status for t in texts) == Counter(progress.statuses)
    return progress


def test_texts_every_subscribed_number_of_the_segments_once_minus_exclusions(audience):
    campaign = make_campaign(audience)
    assert campaign_launch(campaign=campaign, now=NOON, chunk=7)
    texts = texts_of(audience.tenant, campaign)
    by_subscriber = Counter(t.subscriber_id for t in texts)
    assert set(by_subscriber) == audience.subscribed
    assert set(by_subscriber.values()) == {1}
    assert not set(by_subscriber) & (audience.unsubscribed | audience.pending | audience.staff_ids)
    for text in texts:
        name = audience.first_names[text.subscriber_id]
        assert text.body.startswith(f"Hi {name or 'there'}, you have ")
        assert text.body.endswith("Double points today!\nReply STOP to opt out")
        assert (text.kind, text.status, text.source) == (
            MessageKind.MARKETING,
            "queued",
            "campaign",
        )
        assert text.dedupe_key == f"campaign:{campaign.pk}:{text.subscriber_id}"
        assert text.send_after == NOON and text.segments == 1 and text.encoding == "GSM-7"
        assert text.to == subscriber(audience.tenant, text.subscriber_id).e164
    # Members show their balance; numbers without a member the fallback.
    assert any(", you have no points" in t.body for t in texts)
    assert any(", you have 5" in t.body for t in texts)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    progress = assert_counters_add_up(campaign, texts)
    assert progress.statuses == {"queued": len(audience.subscribed)}
    assert progress.pending == 0


def test_the_outsiders_numbers_are_never_in_the_audience(audience, charlie_brand):
    campaign = make_campaign(audience)
    campaign_launch(campaign=campaign, now=NOON)
    with tenant_scope(charlie_brand.tenant):
        assert not OutboundMessage.objects.filter(source="campaign").exists()
    with pytest.raises(Http404):
        get_campaign(charlie_brand.tenant, campaign.pk)


def test_launching_twice_creates_each_text_once(audience):
    campaign = make_campaign(audience)
    assert campaign_launch(campaign=campaign, now=NOON, chunk=5)
    # As a redelivered task finds it when the worker died after its last chunk, before the
    # campaign was marked sent (acks_late: the broker hands the task out again).
    with tenant_scope(audience.tenant):
        Campaign.objects.filter(pk=campaign.pk).update(
            status=CampaignStatus.SENDING, finished_at=None
        )
    assert campaign_launch(campaign=campaign, now=NOON + timedelta(minutes=1), chunk=5)
    assert campaign_advance(campaign=campaign, now=NOON + timedelta(minutes=2))
    texts = texts_of(audience.tenant, campaign)
    assert sorted(t.subscriber_id for t in texts) == sorted(audience.subscribed)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert_counters_add_up(campaign, texts)


class WorkerDied(Exception):
    pass


def test_a_worker_dying_mid_launch_then_a_relaunch_texts_everyone_exactly_once(audience):
    campaign = make_campaign(audience)

    def die_in_third_chunk(n: int) -> None:
        if n == 3:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        campaign_launch(campaign=campaign, now=NOON, chunk=4, after_chunk=die_in_third_chunk)
    # Two chunks committed; the third rolled back with the worker.
    assert len(texts_of(audience.tenant, campaign)) == 8
    campaign.refresh_from_db()
    assert (campaign.status, campaign.created_count) == (CampaignStatus.SENDING, 8)
    # The scan finds the stalled launch and carries it on.
    assert (campaign.tenant_id, campaign.pk) in campaigns_due(NOON + timedelta(minutes=10))
    assert campaign_advance(campaign=campaign, now=NOON + timedelta(minutes=10), chunk=4)
    texts = texts_of(audience.tenant, campaign)
    assert sorted(t.subscriber_id for t in texts) == sorted(audience.subscribed)
    assert_counters_add_up(campaign, texts)


def test_an_unsubscribe_after_launch_is_suppressed_by_the_dispatcher(audience):
    campaign = make_campaign(audience)
    campaign_launch(campaign=campaign, now=NOON)
    quitter = min(audience.subscribed)
    subscriber_opt_out(
        subscriber=subscriber(audience.tenant, quitter),
        evidence=Evidence(source="keyword"),
        now=NOON,
        confirm=False,
    )
    report = dispatch_due(now=lambda: NOON + timedelta(seconds=1))
    texts = texts_of(audience.tenant, campaign)
    statuses = {t.subscriber_id: t.status for t in texts}
    assert statuses.pop(quitter) == "suppressed"
    assert set(statuses.values()) == {"sent"}
    assert report.suppressed == 1  # (the report also counts the brands' opt-in texts)
    progress = assert_counters_add_up(campaign, texts)
    assert progress.statuses == {"sent": len(texts) - 1, "suppressed": 1}
    assert progress.percent_done == 100.0


EVENING = NOON + timedelta(hours=8, minutes=30)  # 20:30 in New York


def test_quiet_hours_and_caps_defer_campaign_texts_through_the_dispatcher(audience):
    tenant = audience.tenant
    capped = max(audience.subscribed)
    earlier, _ = message_create(
        tenant=tenant,
        subscriber=subscriber(tenant, capped),
        template="Flash sale!",
        kind=MessageKind.MARKETING,
        source="test",
        dedupe_key="earlier",
        now=EVENING,
    )
    dispatch_due(now=lambda: EVENING)
    earlier.refresh_from_db()
    assert earlier.status == "sent"
    night = NOON + timedelta(hours=11)  # 23:00 in New York
    campaign = make_campaign(audience, now=night)
    campaign_launch(campaign=campaign, now=night)
    dispatch_due(now=lambda: night)
    next_morning = NOON + timedelta(hours=20)  # 08:00 in New York
    for text in texts_of(tenant, campaign):
        assert text.status == "deferred"
        # The number texted at 20:30 waits for its 12 hours to pass (08:30), the others for
        # the morning.
        expected = EVENING + timedelta(hours=12) if text.subscriber_id == capped else next_morning
        assert text.send_after == expected
    # At 08:00 all go, but the number texted at 20:30 yesterday waits for its 12 hours.
    dispatch_due(now=lambda: next_morning)
    texts = texts_of(tenant, campaign)
    assert Counter(t.status for t in texts)["sent"] == len(audience.subscribed) - 1
    (held,) = [t for t in texts if t.status == "deferred"]
    assert held.subscriber_id == capped
    assert held.send_after == EVENING + timedelta(hours=12)
    dispatch_due(now=lambda: held.send_after)
    held.refresh_from_db()
    assert held.status == "sent"
    assert_counters_add_up(campaign, texts_of(tenant, campaign))


def test_holdout_recipients_get_no_text_and_are_counted(audience):
    campaign = make_campaign(audience, holdout_percent=40)
    campaign_launch(campaign=campaign, now=NOON)
    recipients = recipients_of(audience.tenant, campaign)
    held = {r.subscriber_id for r in recipients if r.group == RecipientGroup.HOLDOUT}
    assert 0 < len(held) < len(audience.subscribed)
    texts = texts_of(audience.tenant, campaign)
    assert {t.subscriber_id for t in texts} == audience.subscribed - held
    campaign.refresh_from_db()
    assert campaign.holdout_count == len(held)
    assert_counters_add_up(campaign, texts)
    # A second campaign with the same share holds out others: the hash includes the campaign.
    other = make_campaign(audience, name="Another", holdout_percent=40)
    campaign_launch(campaign=other, now=NOON)
    held_again = {
        r.subscriber_id
        for r in recipients_of(audience.tenant, other)
        if r.group == RecipientGroup.HOLDOUT
    }
    assert held_again != held


def test_smart_sending_skips_numbers_texted_within_the_hours(audience):
    tenant = audience.tenant
    recent = sorted(audience.subscribed)[:3]
    for n, subscriber_id in enumerate(recent):
        when = NOON - timedelta(hours=(2, 4, 20)[n])  # sent at 10:00, 08:00, 16:00 the day before
        message_create(
            tenant=tenant,
            subscriber=subscriber(tenant, subscriber_id),
            template="Earlier news",
            kind=MessageKind.MARKETING,
            source="test",
            dedupe_key=f"recent-{n}",
            now=when,
        )
        dispatch_due(now=lambda when=when: when)
    campaign = make_campaign(audience, smart_sending_hours=16)
    campaign_launch(campaign=campaign, now=NOON)
    skipped = {
        r.subscriber_id: r.skip_reason
        for r in recipients_of(tenant, campaign)
        if r.group == RecipientGroup.SKIPPED
    }
    assert skipped == {recent[0]: "smart sending", recent[1]: "smart sending"}
    texts = texts_of(tenant, campaign)
    assert {t.subscriber_id for t in texts} == audience.subscribed - set(skipped)
    campaign.refresh_from_db()
    assert campaign.skipped_count == 2
    assert_counters_add_up(campaign, texts)


def test_local_time_mode_sends_at_that_time_in_each_recipients_zone(audience):
    tenant = audience.tenant
    la = sorted(audience.subscribed)[0]
    with tenant_scope(tenant):
        from messaging.models import Subscriber

        Subscriber.objects.filter(pk=la).update(timezone="America/Los_Angeles")
    campaign = make_campaign(
        audience, send_mode="local", local_date=date(2026, 6, 11), local_time=time(10, 30)
    )
    # Not before 10:30 on the 11th in UTC+14 (20:30 UTC on the 10th).
    assert campaign_advance(campaign=campaign, now=NOON)
    assert texts_of(tenant, campaign) == []
    launch = NOON + timedelta(hours=5)
    assert campaign_advance(campaign=campaign, now=launch)
    for text in texts_of(tenant, campaign):
        zone_hour = 17 if text.subscriber_id == la else 14  # 10:30 local, in UTC
        assert text.send_after == NOON.replace(day=11, hour=zone_hour, minute=30)


def test_a_scheduled_campaign_waits_for_its_time(audience):
    at = NOON + timedelta(hours=3)
    campaign = make_campaign(audience, send_mode="at", send_at=at, expires_hours=2)
    assert (campaign.tenant_id, campaign.pk) not in campaigns_due(NOON)
    assert campaign_advance(campaign=campaign, now=NOON)
    assert texts_of(audience.tenant, campaign) == []
    assert (campaign.tenant_id, campaign.pk) in campaigns_due(at)
    assert campaign_advance(campaign=campaign, now=at)
    texts = texts_of(audience.tenant, campaign)
    assert len(texts) == len(audience.subscribed)
    assert {t.send_after for t in texts} == {at}
    assert {t.expires_at for t in texts} == {at + timedelta(hours=2)}


def test_cancel_mid_send_cancels_every_text_not_yet_sent(audience):
    campaign = make_campaign(audience)
    campaign_launch(campaign=campaign, now=NOON)
    # The opt-in confirmations queued while building the brands go first (oldest).
    dispatch_due(now=lambda: NOON - timedelta(hours=1))
    report = dispatch_due(now=lambda: NOON, batch=5, max_batches=1)
    assert report.sent == 5
    canceled = campaign_cancel(campaign=campaign, now=NOON + timedelta(seconds=5))
    assert canceled == len(audience.subscribed) - 5
    assert dispatch_due(now=lambda: NOON + timedelta(seconds=10)).sent == 0
    texts = texts_of(audience.tenant, campaign)
    assert Counter(t.status for t in texts) == {"sent": 5, "canceled": canceled}
    progress = assert_counters_add_up(campaign, texts)
    assert progress.status == CampaignStatus.CANCELED
    # A canceled campaign creates nothing more, however often it is launched.
    assert campaign_launch(campaign=campaign, now=NOON + timedelta(minutes=1))
    assert len(texts_of(audience.tenant, campaign)) == len(texts)


def test_cancel_before_launch_creates_nothing(audience):
    campaign = make_campaign(audience, send_mode="at", send_at=NOON + timedelta(hours=1))
    assert campaign_cancel(campaign=campaign, now=NOON) == 0
    assert campaign_advance(campaign=campaign, now=NOON + timedelta(hours=2))
    assert texts_of(audience.tenant, campaign) == []


def test_a_text_too_long_after_personalization_is_skipped_and_counted(audience):
    tenant = audience.tenant
    long_body = "{first_name|friend} " + "x" * 1590
    campaign = make_campaign(audience, body=long_body)
    campaign_launch(campaign=campaign, now=NOON)
    texts = texts_of(tenant, campaign)
    # "friend " + 1590 + footer fits no one: every text is over 1,600 characters.
    assert texts == []
    campaign.refresh_from_db()
    assert campaign.skipped_count == len(audience.subscribed)
    assert_counters_add_up(campaign, texts)


def test_bodies_with_unknown_tags_or_without_a_segment_are_refused(audience):
    with pytest.raises(CampaignInvalid) as raised:
        make_campaign(audience, body="Hi {frist_name}!", schedule=False)
    assert "{frist_name}" in raised.value.errors["body"][0]
    with pytest.raises(CampaignInvalid) as raised:
        make_campaign(audience, body="Your code {reward_code}", schedule=False)
    assert "reward_code" in raised.value.errors["body"][0]
    with pytest.raises(CampaignInvalid) as raised:
        make_campaign(audience, segment_ids=[], schedule=False)
    assert "segment_ids" in raised.value.errors
    with pytest.raises(CampaignInvalid) as raised:
        make_campaign(audience, send_mode="at", schedule=False)
    assert "send_at" in raised.value.errors


def test_only_a_draft_changes(audience):
    campaign = make_campaign(audience, schedule=False)
    campaign = campaign_update(campaign=campaign, now=NOON, name="Renamed")
    assert campaign.name == "Renamed"
    with pytest.raises(CampaignInvalid):
        campaign_update(campaign=campaign, now=NOON, body="{nope}")
    campaign_schedule(campaign=campaign, now=NOON)
    with pytest.raises(CampaignNotEditable):
        campaign_update(campaign=campaign, now=NOON, name="Too late")


def test_links_are_tracked_per_recipient(audience):
    campaign = make_campaign(audience, body="Sale at https://shop.test/sale today")
    campaign_launch(campaign=campaign, now=NOON)
    from messaging.models import ShortLink

    texts = texts_of(audience.tenant, campaign)
    with tenant_scope(audience.tenant):
        links = {
            link.message_dedupe_key: link
            for link in ShortLink.objects.filter(message_dedupe_key__startswith="campaign:")
        }
    assert len(links) == len(texts)
    for text in texts:
        link = links[text.dedupe_key]
        assert link.subscriber_id == text.subscriber_id
        assert link.target == "https://shop.test/sale"
        assert f"/l/{link.code} today" in text.body


def test_a_link_code_drawn_twice_draws_the_chunk_again(audience, monkeypatch):
    """A code that exists already (1 in 3.5e12 a draw; about once in seven million-link
    campaigns) costs the chunk a second draw, not the launch."""
    from messaging.models import ShortLink
    from messaging.services.bulk import LinkShortener

    first = make_campaign(audience, body="Sale at https://shop.test/sale today")
    campaign_launch(campaign=first, now=NOON)
    with tenant_scope(audience.tenant):
        taken = ShortLink.objects.values_list("code", flat=True).first()
    real = LinkShortener.new_code
    draws = {"n": 0}

    def unlucky(self) -> str:
        draws["n"] += 1
        return taken if draws["n"] == 2 else real(self)

    monkeypatch.setattr(LinkShortener, "new_code", unlucky)
    second = make_campaign(audience, name="Again", body="More at https://shop.test/more")
    assert campaign_launch(campaign=second, now=NOON)
    texts = texts_of(audience.tenant, second)
    assert sorted(t.subscriber_id for t in texts) == sorted(audience.subscribed)
    with tenant_scope(audience.tenant):
        codes = list(ShortLink.objects.values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 2 * len(texts)
    assert draws["n"] > len(texts)  # the chunk was drawn again


def test_a_text_being_sent_when_canceled_is_not_sent_again_if_its_send_fails(audience):
    campaign = make_campaign(audience)
    campaign_launch(campaign=campaign, now=NOON)
    dispatch_due(now=lambda: NOON - timedelta(hours=1))
    first, *_ = texts_of(audience.tenant, campaign)
    with tenant_scope(audience.tenant):
        # Claimed by a dispatcher (status sending) when the campaign is canceled…
        OutboundMessage.objects.filter(pk=first.pk).update(status="sending", sending_at=NOON)
    campaign_cancel(campaign=campaign, now=NOON + timedelta(seconds=1))
    with tenant_scope(audience.tenant):
        assert OutboundMessage.objects.get(pk=first.pk).status == "sending"
        # …then its send fails and it is put back to be tried again.
        OutboundMessage.objects.filter(pk=first.pk).update(
            status="queued", send_after=NOON + timedelta(seconds=30)
        )
    report = dispatch_due(now=lambda: NOON + timedelta(minutes=1))
    assert report.sent == 0
    with tenant_scope(audience.tenant):
        assert OutboundMessage.objects.get(pk=first.pk).status == "expired"
