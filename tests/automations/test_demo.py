"""The demo brand's campaigns: two sent ones whose results add up, one scheduled, and nothing of
the past left for the dispatcher `make run` starts."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.utils import timezone

from automations.models import Campaign, CampaignRecipient, CampaignStatus, RecipientGroup
from automations.selectors import campaign_progress, campaign_variants
from automations.services.launch import campaigns_due
from automations.stats import campaign_stats
from loyaltysms.demo import seed_demo
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import DUE_STATUSES, MessageStatus, OutboundMessage, ShortLink
from messaging.services.dispatch import dispatch_due

UNSETTLED = [*DUE_STATUSES, MessageStatus.SENDING]


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo seeded once for this module (it takes a while), rolled back afterwards."""
    with django_db_blocker.unblock(), transaction.atomic():
        result = seed_demo()
        yield result
        transaction.set_rollback(True)


@pytest.fixture
def tenant(demo, db) -> Tenant:
    return Tenant.objects.get(slug="demo")


def campaigns_of(tenant: Tenant) -> list[Campaign]:
    with tenant_scope(tenant):
        return list(Campaign.objects.order_by("id"))


def texts_of(tenant: Tenant, campaign: Campaign) -> list[OutboundMessage]:
    with tenant_scope(tenant):
        return list(OutboundMessage.objects.filter(source="campaign", source_ref=str(campaign.pk)))


def recipients_of(tenant: Tenant, campaign: Campaign, group: str) -> set[int]:
    with tenant_scope(tenant):
        return set(
            CampaignRecipient.objects.filter(campaign=campaign, group=group).values_list(
                "subscriber_id", flat=True
            )
        )


def test_two_past_campaigns_are_sent_with_believable_results(demo, tenant):
    campaigns = campaigns_of(tenant)
    assert demo["seeded"]["automations"]["campaigns"] == len(campaigns) == 3
    now = timezone.now()
    for campaign in campaigns[:2]:
        assert campaign.status == CampaignStatus.SENT
        assert campaign.send_at <= campaign.finished_at < now - timedelta(days=4)
        stats = campaign_stats(tenant, campaign)
        assert stats.delivered > 0 and stats.unique_clicks > 0
        assert stats.attributed_orders > 0 and stats.revenue > 0
        assert 0.94 < stats.delivery_rate < 1
        assert 0.1 <= stats.ctr <= 0.2
        assert stats.replies > 0 and 0 < stats.opt_outs < 5
        assert stats.conversion_rate < 0.1
        texts = texts_of(tenant, campaign)
        assert stats.sent == len(texts)
        # Sent and settled when the campaign went, not when the demo was seeded.
        for text in texts:
            assert campaign.send_at <= text.sent_at <= campaign.finished_at
            if text.delivered_at:
                assert text.delivered_at - text.sent_at < timedelta(minutes=1)


def test_the_counters_add_up(tenant):
    for campaign in campaigns_of(tenant)[:2]:
        progress = campaign_progress(campaign)
        assert progress.audience == (
            progress.created + progress.holdout + progress.skipped + progress.pending
        )
        assert progress.pending == 0
        assert progress.audience == campaign.audience_count > 0
        assert progress.created == campaign.created_count == len(texts_of(tenant, campaign))
        assert set(progress.statuses) <= {"delivered", "undelivered"}


def test_the_ab_test_sent_the_variant_with_more_clicks_to_the_rest(tenant):
    lapsed = campaigns_of(tenant)[1]
    assert lapsed.ab_test and lapsed.winner_metric == "clicks"
    variants = campaign_variants(lapsed)
    assert len(variants) == 2
    # Each variant's click rate in the test group by the decision, counted here from the links.
    text_of = {text.subscriber_id: text for text in texts_of(tenant, lapsed)}
    with tenant_scope(tenant):
        variant_of = dict(
            CampaignRecipient.objects.filter(
                campaign=lapsed, group=RecipientGroup.TEST
            ).values_list("subscriber_id", "variant_id")
        )
        clicked = set(
            ShortLink.objects.filter(
                message_dedupe_key__startswith=f"campaign:{lapsed.pk}:",
                first_clicked_at__lte=lapsed.winner_chosen_at,
            ).values_list("subscriber_id", flat=True)
        )
    rates = {}
    for variant in variants:
        mine = [s for s, v in variant_of.items() if v == variant.pk]
        rates[variant.pk] = sum(1 for s in mine if s in clicked) / len(mine)
    assert lapsed.winner_scores == {str(k): v for k, v in rates.items()}
    winner = max(rates, key=rates.get)
    assert lapsed.winner_id == winner and rates[winner] > min(rates.values())
    assert lapsed.winner_chosen_at == lapsed.send_at + timedelta(minutes=lapsed.wait_minutes)
    # The remainder got the winner's words, sent after the decision.
    by_id = {v.pk: v for v in variants}
    words = {pk: v.body.split("}", 1)[1].split("https://")[0] for pk, v in by_id.items()}
    loser = next(pk for pk in by_id if pk != winner)
    remainder = recipients_of(tenant, lapsed, RecipientGroup.REMAINDER)
    assert remainder
    for subscriber_id in remainder:
        text = text_of[subscriber_id]
        assert words[winner] in text.body and words[loser] not in text.body
        assert text.sent_at == lapsed.winner_chosen_at


def test_the_holdout_got_no_text_and_shows_incremental_revenue(tenant):
    lapsed = campaigns_of(tenant)[1]
    held = recipients_of(tenant, lapsed, RecipientGroup.HOLDOUT)
    assert held and lapsed.holdout_percent == 10
    texted = {t.subscriber_id for t in texts_of(tenant, lapsed)}
    assert not held & texted
    with tenant_scope(tenant):
        keys = [f"campaign:{lapsed.pk}:{s}" for s in held]
        assert not OutboundMessage.objects.filter(dedupe_key__in=keys).exists()
    stats = campaign_stats(tenant, lapsed)
    assert stats.holdout_recipients == len(held) == lapsed.holdout_count
    assert stats.revenue_per_texted > stats.revenue_per_holdout
    assert stats.incremental_revenue > 0


def test_nothing_of_the_past_is_left_for_the_dispatcher(tenant):
    beans, lapsed, _ = campaigns_of(tenant)
    with tenant_scope(tenant):
        for campaign in (beans, lapsed):
            waiting = OutboundMessage.objects.filter(
                dedupe_key__startswith=f"campaign:{campaign.pk}:", status__in=UNSETTLED
            )
            assert not waiting.exists()
        # Opt-out confirmations of the past went at the time too.
        assert not OutboundMessage.objects.filter(
            status__in=UNSETTLED, send_after__lt=timezone.now() - timedelta(days=1)
        ).exists()
    # A dispatcher run (a day ahead, so anything due by then goes) leaves their texts as they
    # are, and the beat scan finds no campaign of theirs to advance.
    before = {
        t.pk: (t.status, t.sent_at) for t in texts_of(tenant, beans) + texts_of(tenant, lapsed)
    }
    dispatch_due(now=lambda: timezone.now() + timedelta(days=1))
    after = {
        t.pk: (t.status, t.sent_at) for t in texts_of(tenant, beans) + texts_of(tenant, lapsed)
    }
    assert after == before
    for campaign in (beans, lapsed):
        assert (tenant.pk, campaign.pk) not in campaigns_due(timezone.now())


def test_one_campaign_is_scheduled_in_the_brands_morning(tenant):
    birthday = campaigns_of(tenant)[2]
    now = timezone.now()
    assert (birthday.status, birthday.send_mode) == (CampaignStatus.SCHEDULED, "at")
    local = birthday.send_at.astimezone(ZoneInfo("America/New_York"))
    assert now + timedelta(days=2) < birthday.send_at < now + timedelta(days=4)
    assert (local.hour, local.minute) == (10, 0)
    assert "{first_name" in birthday.body and "https://" in birthday.body
    assert birthday.audience_count == 0 and texts_of(tenant, birthday) == []
    assert (tenant.pk, birthday.pk) not in campaigns_due(now)
    assert (tenant.pk, birthday.pk) in campaigns_due(birthday.send_at)


def test_the_counts_returned_match_the_rows(demo, tenant):
    counts = demo["seeded"]["automations"]
    beans, lapsed, _ = campaigns_of(tenant)
    texts = texts_of(tenant, beans) + texts_of(tenant, lapsed)
    assert counts["texts"] == len(texts)
    assert counts["delivered"] == sum(1 for t in texts if t.status == MessageStatus.DELIVERED)
    stats = [campaign_stats(tenant, c) for c in (beans, lapsed)]
    assert counts["clicks"] == sum(s.unique_clicks for s in stats)
    assert counts["opt_outs"] == sum(s.opt_outs for s in stats)


def test_seeding_again_changes_nothing(tenant):
    before = [(c.pk, c.status) for c in campaigns_of(tenant)]
    assert seed_demo()["created"] is False
    assert [(c.pk, c.status) for c in campaigns_of(tenant)] == before


def test_three_prebuilt_flows_wait_as_drafts(demo, tenant):
    from automations.models import Flow, FlowRun

    with tenant_scope(tenant):
        flows = list(Flow.objects.order_by("name").values_list("template", "status"))
        assert not FlowRun.objects.exists()
    assert sorted(flows) == [
        ("birthday_reward", "draft"),
        ("welcome_series", "draft"),
        ("winback", "draft"),
    ]
    assert demo["seeded"]["automations"]["flows"] == 3
