"""Dashboard jobs whose task never reached a worker, sent again.

A job (an import, an export, a flow's dry run, an invitation's email) is a row in PostgreSQL
before its task is sent, on commit. While the broker is away the send fails and is only
logged (loyaltysms.tenancy.tasks.enqueue_on_commit), so beat looks for jobs still waiting a
minute after they were made and sends their task again. Every one of these tasks claims its
job first (queued → running with a conditional UPDATE; the invitation row locked with SKIP
LOCKED), so a job whose task arrives twice — the first message late, or two beat runs while
workers are busy — runs once; the extra message finds it taken and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from celery import Task
from django.db.models import QuerySet

logger = logging.getLogger(__name__)

# Long enough for a task sent on commit to be taken by an idle worker.
WAITING_AFTER = timedelta(minutes=1)
# At most this many of each kind a run: a long outage's backlog goes out over a few minutes.
BATCH = 500


def _waiting(now: datetime) -> Iterator[tuple[Task, QuerySet]]:
    """Each kind's task and its jobs made before WAITING_AFTER ago and never started, as
    (tenant_id, job id) rows."""
    # Imported here: these apps' tasks import loyaltysms.
    from automations.models import DryRunStatus, FlowDryRun
    from automations.tasks import flow_dry_run
    from loyaltysms.models import Export, ExportStatus, Invitation
    from loyaltysms.tasks import export_csv, send_invitation_email
    from messaging.models import SubscriberImport
    from messaging.tasks import import_subscribers
    from programs.models import ImportStatus, MemberImport
    from programs.tasks import import_members

    before = now - WAITING_AFTER
    # WARNING: unscoped: beat looks across every brand; each task runs in its job's tenant.
    jobs = [
        (import_members, MemberImport.objects.unscoped().filter(status=ImportStatus.QUEUED)),
        (
            import_subscribers,
            SubscriberImport.objects.unscoped().filter(status=ImportStatus.QUEUED),
        ),
        (export_csv, Export.objects.unscoped().filter(status=ExportStatus.QUEUED)),
        (flow_dry_run, FlowDryRun.objects.unscoped().filter(status=DryRunStatus.QUEUED)),
        (
            send_invitation_email,
            Invitation.objects.unscoped()
            .filter(email_link_encrypted__isnull=False)
            .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now),
        ),
    ]
    for task, queued in jobs:
        rows = queued.filter(created_at__lt=before).order_by("created_at", "pk")
        yield task, rows.values_list("tenant_id", "pk")[:BATCH]


def jobs_requeue(*, now: datetime) -> int:
    """Send again the task of every job still waiting WAITING_AFTER after it was made. A
    broker that still can't be reached fails this run; the next one tries again."""
    sent = 0
    for task, rows in _waiting(now):
        for tenant_id, job_id in rows:
            task.delay(tenant_id, job_id)
            sent += 1
    if sent:
        logger.info("waiting jobs sent again", extra={"jobs": sent})
    return sent
