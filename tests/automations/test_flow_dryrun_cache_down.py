"""A flow's dry run while the Redis cache, where its progress is kept, is down or hung: the
run still finishes, and its page answers, saying it can't show how far it has got."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automations.models import DryRunStatus, FlowDryRun
from automations.services.flow_dryrun import flow_dry_run_execute, flow_dry_run_queue

from ..outage import cache_down, cache_hung
from .conftest import join
from .test_flow_pages import make_flow, owner  # noqa: F401 - the signed-in owner fixture


def test_a_dry_run_finishes_while_the_cache_is_down(alice_brand, owner):  # noqa: F811
    tenant = alice_brand.tenant
    flow = make_flow(tenant)
    join(tenant, 1, timezone.now() - timedelta(days=3))
    job = flow_dry_run_queue(flow=flow, days=7, now=timezone.now())
    with cache_down():
        job = flow_dry_run_execute(job=job, now=timezone.now())
        page = owner.get(f"/flows/{flow.pk}/dry-runs/{job.pk}/")
    assert job.status == DryRunStatus.DONE and job.report["steps"]["hi"]["texts"] == 1
    assert page.status_code == 200 and "1 would have entered" in page.content.decode()


@pytest.mark.parametrize("outage", [cache_down, cache_hung], ids=["down", "hung"])
def test_a_running_dry_runs_page_answers_while_the_cache_is_away(
    alice_brand,
    owner,  # noqa: F811
    outage,
):
    flow = make_flow(alice_brand.tenant)
    job = flow_dry_run_queue(flow=flow, days=7, now=timezone.now())
    # A worker has taken it and is replaying the history.
    FlowDryRun.objects.unscoped().filter(pk=job.pk).update(
        status=DryRunStatus.RUNNING, started_at=timezone.now()
    )
    with outage():
        page = owner.get(f"/flows/{flow.pk}/dry-runs/{job.pk}/", headers={"HX-Request": "true"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "can't be shown just now" in body and 'hx-trigger="every 2s"' in body
