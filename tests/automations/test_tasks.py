"""The Celery entry points are thin: the launch task runs the service in the tenant's scope,
and refuses to run without a tenant or for another brand's campaign."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.utils import timezone

from automations.models import CampaignStatus
from automations.tasks import campaign_launch
from loyaltysms.tenancy.context import TenantScopeError

from .conftest import texts_of
from .test_campaigns import make_campaign


def test_the_launch_task_creates_the_texts_once(audience):
    campaign = make_campaign(audience, now=timezone.now())
    campaign_launch(audience.tenant.pk, campaign.pk)
    campaign_launch(audience.tenant.pk, campaign.pk)  # redelivered
    texts = texts_of(audience.tenant, campaign)
    assert sorted(t.subscriber_id for t in texts) == sorted(audience.subscribed)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_the_launch_task_needs_the_campaigns_own_tenant(audience, charlie_brand):
    campaign = make_campaign(audience, now=timezone.now())
    with pytest.raises(Http404):
        campaign_launch(charlie_brand.tenant.pk, campaign.pk)
    with pytest.raises(TenantScopeError):
        campaign_launch(None, campaign.pk)
    assert texts_of(audience.tenant, campaign) == []
