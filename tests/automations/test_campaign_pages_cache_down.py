"""The campaign pages while the Redis cache is down: the progress bar's figures come
straight from PostgreSQL, and cancelling answers (the cached bar is dropped when it can be)."""

from __future__ import annotations

from django.utils import timezone

from automations.models import CampaignStatus
from automations.services.campaigns import campaign_schedule
from automations.services.launch import campaign_launch

from ..outage import cache_down
from .test_campaign_pages import _draft, owner  # noqa: F401 - the signed-in owner fixture


def test_progress_and_cancel_answer_while_the_cache_is_down(audience, owner):  # noqa: F811
    campaign = _draft(audience)
    campaign_schedule(campaign=campaign, now=timezone.now())
    campaign_launch(campaign=campaign, now=timezone.now())  # created, not yet dispatched
    with cache_down():
        progress = owner.get(f"/campaigns/{campaign.pk}/progress/")
        detail = owner.get(f"/campaigns/{campaign.pk}/")
        cancel = owner.post(f"/campaigns/{campaign.pk}/cancel/", {"confirm": "yes"})
    assert progress.status_code == 200 and "Sending: 0.0 %" in progress.content.decode()
    assert detail.status_code == 200
    assert cancel.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELED
