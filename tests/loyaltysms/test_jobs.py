"""Dashboard jobs made while the Celery broker (Redis) is down: each is a row in PostgreSQL
that its page shows as waiting; beat's requeue_waiting_jobs sends their task again once the
broker is back, and each job runs once however many times its task arrives
(loyaltysms.jobs)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from automations.models import DryRunStatus, FlowDryRun
from loyaltysms import celery_app, services
from loyaltysms.jobs import WAITING_AFTER, jobs_requeue
from loyaltysms.models import Export, ExportStatus, Invitation
from loyaltysms.queues import Queue
from loyaltysms.tasks import send_invitation_email
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt
from messaging.models import SubscriberImport
from programs.models import ImportStatus, MemberImport

from ..automations.test_flow_pages import make_flow
from ..conftest import signed_in
from ..outage import broker_down, closed_port

LATER = WAITING_AFTER + timedelta(seconds=1)
MEMBERS_CSV = b"external_id,first_name,phone\nm-1,Cy,+12125550111\nm-2,Di,+12125550112\n"
NUMBERS_CSV = (
    b"phone,consented_at\n+12125550121,2026-01-05T10:00:00+00:00\n"
    b"+12125550122,2026-01-05T10:00:00+00:00\n"
)


def make_jobs(brand) -> dict:
    """One job of each kind, asked for on its page as a person would."""
    client = signed_in(brand.owner)
    upload = {"file": SimpleUploadedFile("m.csv", MEMBERS_CSV, "text/csv")}
    assert client.post(reverse("member_import"), upload).status_code == 302
    upload = {
        "file": SimpleUploadedFile("n.csv", NUMBERS_CSV, "text/csv"),
        "consent_text": "Texts from Alice's Bakery, reply STOP to stop.",
    }
    assert client.post(reverse("subscribers_import"), upload).status_code == 302
    assert client.post(reverse("export_start", args=["members"])).status_code == 302
    flow = make_flow(brand.tenant)
    assert client.post(f"/flows/{flow.pk}/dry-run/", {"days": "7"}).status_code == 302
    invite = {"email": "new.hire@bakery.test", "role": "marketer"}
    assert client.post(reverse("settings_team"), invite).status_code == 200
    with tenant_scope(brand.tenant):
        return {
            "member_import": MemberImport.objects.get(),
            "subscriber_import": SubscriberImport.objects.get(),
            "export": Export.objects.get(),
            "dry_run": FlowDryRun.objects.get(),
            "invitation": Invitation.objects.get(),
        }


def reload(jobs: dict) -> dict:
    for job in jobs.values():
        job.refresh_from_db()
    return jobs


def all_done(jobs: dict) -> bool:
    jobs = reload(jobs)
    finished = {job.status for name, job in jobs.items() if name != "invitation"} == {"done"}
    return finished and jobs["invitation"].email_link_encrypted is None


def messages_waiting() -> int:
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        return sum(channel.queue_declare(queue=queue.value).message_count for queue in Queue)


def wait_for(predicate, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
def test_jobs_made_while_the_broker_is_down_run_once_when_beat_sends_them_again(alice_brand):
    celery_app.control.purge()  # nothing left over from other tests
    with broker_down():
        jobs = make_jobs(alice_brand)
    assert messages_waiting() == 0, "nothing could be sent"
    reload(jobs)
    assert {job.status for name, job in jobs.items() if name != "invitation"} == {"queued"}
    assert "/invite/" in decrypt(jobs["invitation"].email_link_encrypted) and mail.outbox == []

    # Made just now, their tasks may still be on the way: beat leaves them a minute.
    assert jobs_requeue(now=timezone.now()) == 0
    # Two beat runs before any worker is free: every job's task is sent twice.
    assert jobs_requeue(now=timezone.now() + LATER) == 5
    assert jobs_requeue(now=timezone.now() + LATER) == 5
    assert messages_waiting() == 10
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=[queue.value for queue in Queue],
        shutdown_timeout=30,
    ):
        assert wait_for(lambda: all_done(jobs)), reload(jobs)
        assert wait_for(lambda: messages_waiting() == 0)
    # (the worker finishes the task in hand before it stops)

    reload(jobs)
    # Each ran once: a second import of the same file would have found them all there.
    member_import, subscriber_import = jobs["member_import"], jobs["subscriber_import"]
    assert (member_import.created, member_import.updated, member_import.failed) == (2, 0, 0)
    assert (subscriber_import.imported, subscriber_import.already_subscribed) == (2, 0)
    assert jobs["export"].processed_rows == 2 and jobs["export"].started_at is not None
    assert jobs["dry_run"].report is not None
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.hire@bakery.test"]
    assert "/invite/" in mail.outbox[0].body
    assert jobs_requeue(now=timezone.now() + LATER) == 0


def test_beat_sends_nothing_for_started_finished_or_withdrawn_jobs(
    alice_brand, charlie_brand, django_capture_on_commit_callbacks
):
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        jobs = make_jobs(alice_brand)
        revoked = services.invitation_create(
            tenant=charlie_brand.tenant,
            email="gone@cafe.test",
            role="viewer",
            invited_by=charlie_brand.owner,
            site_url="http://testserver/",
        ).invitation
    services.invitation_revoke(invitation=revoked, revoked_by=charlie_brand.owner)
    MemberImport.objects.unscoped().filter(pk=jobs["member_import"].pk).update(
        status=ImportStatus.RUNNING  # taken by a worker
    )
    FlowDryRun.objects.unscoped().filter(pk=jobs["dry_run"].pk).update(status=DryRunStatus.FAILED)
    Invitation.objects.unscoped().filter(pk=jobs["invitation"].pk).update(
        expires_at=timezone.now() + timedelta(seconds=30)
    )
    # The subscriber import and the export, alone: the invitation will have expired by then.
    later = timezone.now() + timedelta(seconds=31) + WAITING_AFTER
    with broker_down(), pytest.raises(OperationalError):
        jobs_requeue(now=later)  # the broker still away: this run fails, the next tries again
    sent = jobs_requeue(now=later)
    celery_app.control.purge()
    assert sent == 2


def test_an_invitation_email_sent_twice_goes_once(alice_brand, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        new = services.invitation_create(
            tenant=alice_brand.tenant,
            email="new.hire@bakery.test",
            role="marketer",
            invited_by=alice_brand.owner,
            site_url="http://testserver/",
        )
    assert len(callbacks) == 1, "its task, sent on commit"
    invitation = new.invitation
    assert decrypt(invitation.email_link_encrypted) == f"http://testserver/invite/{new.token}/"
    assert new.token not in bytes(invitation.email_link_encrypted).decode()  # not in plain text
    tenant_id = alice_brand.tenant.pk
    send_invitation_email.apply(args=[tenant_id, invitation.pk], throw=True)
    send_invitation_email.apply(args=[tenant_id, invitation.pk], throw=True)  # beat's, late
    assert len(mail.outbox) == 1 and new.token in mail.outbox[0].body
    invitation.refresh_from_db()
    assert invitation.email_link_encrypted is None  # the token's hash alone is kept


def test_an_invitation_email_that_fails_stays_owed(alice_brand):
    new = services.invitation_create(
        tenant=alice_brand.tenant,
        email="new.hire@bakery.test",
        role="marketer",
        invited_by=alice_brand.owner,
        site_url="http://testserver/",
    )
    mail_server_down = override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=closed_port(),
        EMAIL_TIMEOUT=2,
    )
    with mail_server_down:
        result = send_invitation_email.apply(args=[alice_brand.tenant.pk, new.invitation.pk])
    assert result.failed() and isinstance(result.result, ConnectionError)
    new.invitation.refresh_from_db()
    assert decrypt(new.invitation.email_link_encrypted) == new.link
    owed = jobs_requeue(now=timezone.now() + LATER)
    celery_app.control.purge()
    assert owed == 1
    send_invitation_email.apply(args=[alice_brand.tenant.pk, new.invitation.pk], throw=True)
    assert len(mail.outbox) == 1


def test_an_export_never_started_is_sent_again_not_failed(alice_brand):
    from loyaltysms.exports import STUCK_AFTER, exports_purge

    client = signed_in(alice_brand.owner)
    assert client.post(reverse("export_start", args=["members"])).status_code == 302
    later = timezone.now() + STUCK_AFTER + LATER
    exports_purge(now=later)
    job = Export.objects.unscoped().get(tenant=alice_brand.tenant)
    assert job.status == ExportStatus.QUEUED
    sent = jobs_requeue(now=later)
    celery_app.control.purge()
    assert sent == 1
