"""Celery entry points of the loyalty engine: thin wrappers around programs.services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task
from programs.services.imports import member_import_run
from programs.services.sweeps import program_sweep


@tenant_task(queue=Queue.SCANS)
def sweep_program(tenant: Tenant) -> dict:
    """Mature pending points, expire due points, pay birthdays, review tiers for one brand."""
    return program_sweep(tenant=tenant, now=timezone.now())


@shared_task(route_queue=Queue.SCANS.value)
def sweep_all_programs() -> int:
    """Beat's entry (every 15 minutes): one sweep task per brand, so brands run in parallel
    and one brand's failure does not hold up the others."""
    tenant_ids = list(Tenant.objects.order_by("id").values_list("id", flat=True))
    for tenant_id in tenant_ids:
        sweep_program.delay(tenant_id)
    return len(tenant_ids)


@tenant_task(queue=Queue.DEFAULT)
def import_members(tenant: Tenant, import_id: int) -> None:
    """A dashboard CSV upload, imported while the page shows progress."""
    member_import_run(tenant=tenant, import_id=import_id, now=timezone.now())
