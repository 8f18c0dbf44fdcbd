from celery import shared_task
from django.utils import timezone

from loyaltysms.exports import export_run, exports_purge
from loyaltysms.idempotency import idempotency_records_purge
from loyaltysms.jobs import jobs_requeue
from loyaltysms.models import Tenant
from loyaltysms.queues import Queue
from loyaltysms.services import invitation_email_send
from loyaltysms.tenancy.tasks import tenant_task


@tenant_task()
def send_invitation_email(tenant: Tenant, invitation_id: int, accept_url: str = "") -> None:
    """The invitation's email, once (`accept_url`: from a task sent before the row kept it)."""
    invitation_email_send(
        tenant=tenant, invitation_id=invitation_id, now=timezone.now(), accept_url=accept_url
    )


@tenant_task(queue=Queue.DEFAULT)
def export_csv(tenant: Tenant, export_id: int) -> None:
    """A list page's CSV, written while the export's page shows progress."""
    export_run(tenant=tenant, export_id=export_id)


@shared_task(route_queue=Queue.SCANS.value)
def purge_exports() -> int:
    """Beat's entry (hourly): exports past their week deleted, stuck ones marked failed."""
    return exports_purge(now=timezone.now())


@shared_task(route_queue=Queue.SCANS.value)
def purge_idempotency_records() -> int:
    """Stored Idempotency-Key responses are kept 48 hours (api.md promises ≥ 24 h)."""
    return idempotency_records_purge()


@shared_task(route_queue=Queue.SCANS.value)
def requeue_waiting_jobs() -> int:
    """Beat's entry (every minute): dashboard jobs whose task was lost are sent again."""
    return jobs_requeue(now=timezone.now())
