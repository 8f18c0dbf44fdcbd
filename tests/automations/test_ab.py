"""A/B tests with a fake clock and clicks on the real tracked links: the winner is chosen by
clicks after the wait, and goes to the remainder exactly once — scans run twice, or at once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from automations.models import CampaignStatus, CampaignVariant, RecipientGroup
from automations.services.campaigns import CampaignInvalid, VariantSpec
from automations.services.launch import campaign_advance, campaigns_due
from loyaltysms.tenancy.context import tenant_scope

from .conftest import NOON, build_audience, click, recipients_of, texts_of
from .test_campaigns import assert_counters_add_up, make_campaign

VARIANTS = [
    VariantSpec("A", "A: 20% off at https://shop.test/a"),
    VariantSpec("B", "B: free gift at https://shop.test/b"),
    VariantSpec("C", "C: double points at https://shop.test/c"),
]
WAIT = 60
START = timezone.now().replace(microsecond=0) - timedelta(hours=2)


def decision_time():
    """A moment after every click so far, and after the wait."""
    return timezone.now() + timedelta(seconds=1)


def ab_campaign(audience, **fields):
    """Launched two hours ago on the test's clock: a tracked link records a click on the real
    clock, so the wait is over by the time the test clicks."""
    fields.setdefault("test_percent", 50)
    fields.setdefault("now", START)
    return make_campaign(
        audience,
        body="",
        variants=VARIANTS,
        winner_metric="clicks",
        wait_minutes=WAIT,
        **fields,
    )


def variants_of(tenant, campaign) -> dict[str, int]:
    with tenant_scope(tenant):
        return dict(CampaignVariant.objects.filter(campaign=campaign).values_list("label", "id"))


def test_only_the_test_group_is_texted_before_the_wait(audience):
    campaign = ab_campaign(audience)
    assert campaign_advance(campaign=campaign, now=START)
    recipients = recipients_of(audience.tenant, campaign)
    test = [r for r in recipients if r.group == RecipientGroup.TEST]
    remainder = [r for r in recipients if r.group == RecipientGroup.REMAINDER]
    assert test and remainder
    assert {r.subscriber_id for r in test} | {r.subscriber_id for r in remainder} == (
        audience.subscribed
    )
    texts = {t.subscriber_id: t for t in texts_of(audience.tenant, campaign)}
    assert set(texts) == {r.subscriber_id for r in test}
    labels = {v: k for k, v in variants_of(audience.tenant, campaign).items()}
    for r in test:
        assert texts[r.subscriber_id].body.startswith(f"{labels[r.variant_id]}: ")
    assert all(r.variant_id is None for r in remainder)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert campaign.winner_due_at == START + timedelta(minutes=WAIT)
    # Before the wait is over the scan leaves it alone and nothing more is created.
    before = START + timedelta(minutes=WAIT - 1)
    assert (campaign.tenant_id, campaign.pk) not in campaigns_due(before)
    assert campaign_advance(campaign=campaign, now=before)
    assert len(texts_of(audience.tenant, campaign)) == len(test)


def click_variant(audience, campaign, label: str, share: float, *, at=None) -> int:
    """Recipients of this variant in the test group click their link (the first `share`)."""
    variant_id = variants_of(audience.tenant, campaign)[label]
    mine = [
        r.subscriber_id
        for r in recipients_of(audience.tenant, campaign)
        if r.group == RecipientGroup.TEST and r.variant_id == variant_id
    ]
    clicking = mine[: max(1, round(len(mine) * share))]
    for subscriber_id in clicking:
        click(audience.tenant, subscriber_id, campaign)
    return len(clicking)


def test_the_variant_with_the_best_click_rate_goes_to_the_remainder_once(audience):
    tenant = audience.tenant
    campaign = ab_campaign(audience)
    campaign_advance(campaign=campaign, now=START)
    click_variant(audience, campaign, "A", 0.3)
    click_variant(audience, campaign, "B", 1.0)
    after_wait = decision_time()
    assert (campaign.tenant_id, campaign.pk) in campaigns_due(after_wait)
    assert campaign_advance(campaign=campaign, now=after_wait)
    assert campaign_advance(campaign=campaign, now=after_wait + timedelta(minutes=1))
    campaign.refresh_from_db()
    winner = variants_of(tenant, campaign)["B"]
    assert campaign.winner_id == winner
    assert campaign.winner_scores[str(winner)] == 1.0
    assert campaign.status == CampaignStatus.SENT
    texts = texts_of(tenant, campaign)
    by_subscriber = Counter(t.subscriber_id for t in texts)
    assert set(by_subscriber) == audience.subscribed and set(by_subscriber.values()) == {1}
    recipients = recipients_of(tenant, campaign)
    remainder = {r.subscriber_id for r in recipients if r.group == RecipientGroup.REMAINDER}
    for text in texts:
        if text.subscriber_id in remainder:
            assert text.body.startswith("B: free gift at ")
            assert text.send_after == after_wait
    assert_counters_add_up(campaign, texts)
    assert (campaign.tenant_id, campaign.pk) not in campaigns_due(after_wait + timedelta(hours=1))


def test_clicks_after_the_decision_moment_do_not_count(audience):
    campaign = ab_campaign(audience)
    campaign_advance(campaign=campaign, now=START)
    # Decided at a moment before the clicks happened: none counts, and the tie goes to the
    # lowest variant id.
    click_variant(audience, campaign, "C", 1.0)
    campaign.refresh_from_db()
    decided_at = campaign.winner_due_at
    assert decided_at < timezone.now() - timedelta(minutes=30)
    campaign_advance(campaign=campaign, now=decided_at)
    campaign.refresh_from_db()
    assert campaign.winner_id == variants_of(audience.tenant, campaign)["A"]


def test_a_tie_goes_to_the_lowest_variant(audience):
    campaign = ab_campaign(audience)
    campaign_advance(campaign=campaign, now=START)
    campaign_advance(campaign=campaign, now=START + timedelta(minutes=WAIT))
    campaign.refresh_from_db()
    assert campaign.winner_id == min(variants_of(audience.tenant, campaign).values())


def test_holdout_and_ab_together_add_up(audience):
    campaign = ab_campaign(audience, holdout_percent=25)
    campaign_advance(campaign=campaign, now=START)
    campaign_advance(campaign=campaign, now=START + timedelta(minutes=WAIT))
    recipients = recipients_of(audience.tenant, campaign)
    groups = Counter(r.group for r in recipients)
    assert groups[RecipientGroup.HOLDOUT] > 0
    texts = texts_of(audience.tenant, campaign)
    held = {r.subscriber_id for r in recipients if r.group == RecipientGroup.HOLDOUT}
    assert not held & {t.subscriber_id for t in texts}
    assert_counters_add_up(campaign, texts)


def test_every_winner_metric_is_available_and_one_variant_is_refused(audience):
    for metric in ("clicks", "orders", "revenue"):
        make_campaign(audience, body="", variants=VARIANTS, winner_metric=metric)
    with pytest.raises(CampaignInvalid) as raised:
        make_campaign(audience, body="", variants=VARIANTS[:1])
    assert "variants" in raised.value.errors


def advance_at_once(campaign, *, now, chunk: int, workers: int = 3) -> list[Exception]:
    """`workers` threads advance the campaign at the same moment (each with its own database
    connection, as concurrent beat scans or redelivered launches would); their errors."""
    errors = []
    start = threading.Barrier(workers)

    def advance():
        try:
            start.wait()
            campaign_advance(
                campaign=campaign.__class__.objects.unscoped().get(pk=campaign.pk),
                now=now,
                chunk=chunk,
            )
        except Exception as exc:  # returned to the test, which asserts there are none
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=advance) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_scans_send_the_winner_to_the_remainder_exactly_once(alice_brand, charlie_brand):
    audience = build_audience(alice_brand.tenant, size=60)
    campaign = ab_campaign(audience, test_percent=30)
    campaign_advance(campaign=campaign, now=START, chunk=5)
    click_variant(audience, campaign, "C", 1.0)
    assert advance_at_once(campaign, now=decision_time(), chunk=5) == []
    texts = texts_of(audience.tenant, campaign)
    by_subscriber = Counter(t.subscriber_id for t in texts)
    assert set(by_subscriber) == audience.subscribed and set(by_subscriber.values()) == {1}
    campaign.refresh_from_db()
    assert campaign.winner_id == variants_of(audience.tenant, campaign)["C"]
    remainder = {
        r.subscriber_id
        for r in recipients_of(audience.tenant, campaign)
        if r.group == RecipientGroup.REMAINDER
    }
    assert {t.subscriber_id for t in texts if t.body.startswith("C: ")} >= remainder
    assert_counters_add_up(campaign, texts)


@pytest.mark.django_db(transaction=True)
def test_concurrent_launches_create_each_text_once(alice_brand, charlie_brand):
    audience = build_audience(alice_brand.tenant, size=60)
    campaign = make_campaign(audience)
    assert advance_at_once(campaign, now=NOON, chunk=4) == []
    texts = texts_of(audience.tenant, campaign)
    by_subscriber = Counter(t.subscriber_id for t in texts)
    assert set(by_subscriber) == audience.subscribed and set(by_subscriber.values()) == {1}
    assert_counters_add_up(campaign, texts)
