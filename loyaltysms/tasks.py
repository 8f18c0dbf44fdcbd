from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from loyaltysms.exports import export_run, exports_purge
from loyaltysms.idempotency import idempotency_records_purge
from loyaltysms.models import Invitation, Tenant
from loyaltysms.queues import Queue
from loyaltysms.tenancy.tasks import tenant_task


@tenant_task()
def send_invitation_email(tenant: Tenant, invitation_id: int, accept_url: str) -> None:
    invitation = Invitation.objects.filter(pk=invitation_id).select_related("invited_by").first()
    if invitation is None or invitation.accepted_at or invitation.revoked_at:
        return
    inviter = invitation.invited_by.email if invitation.invited_by else "A teammate"
    send_mail(
        subject=f"You're invited to {tenant.name} on loyaltysms",
        message=(
            f"{inviter} invited you to join {tenant.name} as {invitation.get_role_display()}.\n\n"
            f"Accept: {accept_url}\n\nThe link works once and expires on "
            f"{invitation.expires_at:%Y-%m-%d}."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
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
