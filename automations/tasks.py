"""Celery entry points of automations: thin wrappers around automations.services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from automations.selectors import get_campaign
from automations.services.launch import campaign_advance, campaigns_due
from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task

# A launch stops creating texts after this long and carries on in a fresh task, well inside
# the task time limit (a chunk under way when the limit hit would only be redone, but the
# time would be lost).
LAUNCH_SECONDS = 120


@tenant_task(queue=Queue.DEFAULT)
def campaign_launch(tenant: Tenant, campaign_id: int) -> None:
    """Launch a campaign, carry on an interrupted launch, or (A/B) send the winner to the
    remainder: whatever is due for it now. Running it twice does nothing twice."""
    campaign = get_campaign(tenant, campaign_id)
    done = campaign_advance(campaign=campaign, now=timezone.now(), max_seconds=LAUNCH_SECONDS)
    if not done:
        campaign_launch.delay(tenant.pk, campaign_id)


@shared_task(route_queue=Queue.SCANS.value)
def campaigns_advance() -> int:
    """Beat's entry (every minute): one task per campaign with something due — a scheduled
    launch, an A/B winner, a launch a dead worker left unfinished."""
    due = campaigns_due(timezone.now())
    for tenant_id, campaign_id in due:
        campaign_launch.delay(tenant_id, campaign_id)
    return len(due)
