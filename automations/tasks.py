"""Celery entry points of automations: thin wrappers around automations.services."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from automations.selectors import get_campaign
from automations.services.flow_scans import flow_scans_run
from automations.services.flow_work import flows_work_once, tenants_with_flow_work
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


# --- flows ----------------------------------------------------------------------------------

# One flows task per brand at a time is enough (two would only share the work): beat sends
# a brand's task at most once per this many seconds.
FLOWS_DEBOUNCE = 30
# A flows task stops taking new batches after this long and hands over to a fresh task.
FLOWS_SECONDS = 60


@tenant_task(queue=Queue.EVENTS)
def flows_work(tenant: Tenant) -> dict:
    """The brand's new events (runs begin and end) and its due runs (their steps), until
    there are none or the time is up (then a fresh task carries on)."""
    cache.delete(_flows_key(tenant.pk))
    report = flows_work_once(tenant=tenant, now=timezone.now, seconds=FLOWS_SECONDS)
    if report["more"]:
        flows_work.delay(tenant.pk)
    return report


def _flows_key(tenant_id: int) -> str:
    return f"flows-work-queued:{tenant_id}"


@shared_task(route_queue=Queue.SCANS.value)
def flows_tick() -> int:
    """Beat's entry (every 10 s): a flows task for each brand with events to act on or runs
    due. WARNING: reads every tenant's outbox and runs, to find whom to wake."""
    tenant_ids = tenants_with_flow_work(timezone.now())
    sent = 0
    for tenant_id in tenant_ids:
        if cache.add(_flows_key(tenant_id), 1, FLOWS_DEBOUNCE):
            flows_work.delay(tenant_id)
            sent += 1
    return sent


@shared_task(route_queue=Queue.SCANS.value)
def flow_scans() -> dict:
    """Beat's entry (every 15 minutes, for zones with :30 and :45 offsets): the date
    triggers of every brand's live flows (birthdays, expiring points, win-backs, …) enter
    whom they hold for, once per occurrence; then a flows task wakes each brand with new
    runs (flows_tick would find them within seconds too). WARNING: scans every tenant."""
    report = flow_scans_run(now=timezone.now())
    for tenant_id in report["tenants"]:
        if cache.add(_flows_key(tenant_id), 1, FLOWS_DEBOUNCE):
            flows_work.delay(tenant_id)
    return report


@tenant_task(queue=Queue.DEFAULT, soft_time_limit=55 * 60, time_limit=60 * 60)
def flow_dry_run(tenant: Tenant, job_id: int) -> None:
    """A dry run the dashboard asked for; its page shows the progress."""
    from automations.models import FlowDryRun
    from automations.services.flow_dryrun import flow_dry_run_execute

    job = FlowDryRun.objects.get(pk=job_id)  # (in the tenant's scope: tenant_task)
    flow_dry_run_execute(job=job, now=timezone.now())
