import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core import mail
from django.urls import reverse

from loyaltysms import celery_app, services
from loyaltysms.models import Invitation
from loyaltysms.queues import Queue
from loyaltysms.tasks import send_invitation_email
from loyaltysms.tenancy.context import TenantScopeError, tenant_scope
from loyaltysms.tenancy.tasks import tenant_task

from ..conftest import signed_in


def test_celery_reliability_settings_are_as_designed():
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result is True
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    # Redis redelivers unacked work after the visibility timeout: it must outlast any task.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert {queue.name for queue in conf.task_queues} == {queue.value for queue in Queue}
    assert conf.task_default_queue == Queue.DEFAULT
    assert conf.broker_url.startswith(("redis://", "rediss://", "redis+socket://"))


def test_every_task_routes_to_a_known_queue():
    celery_app.loader.import_default_modules()
    apps = ("loyaltysms", "programs", "messaging", "segments", "automations")
    ours = {name: task for name, task in celery_app.tasks.items() if name.startswith(apps)}
    assert ours, "no tasks discovered"
    for name, task in ours.items():
        route = celery_app.amqp.router.route({}, name, task_type=task)
        assert route["queue"].name in {queue.value for queue in Queue}, name


@pytest.mark.parametrize("tenant_id", [None, "1", 1.5, True])
def test_task_without_a_tenant_refuses_to_run(db, tenant_id):
    result = send_invitation_email.apply(args=[tenant_id, 1, "http://x"])
    assert result.failed()
    assert isinstance(result.result, TenantScopeError)
    assert mail.outbox == []


def test_task_for_a_missing_tenant_refuses_to_run(db):
    result = send_invitation_email.apply(args=[987654, 1, "http://x"])
    assert isinstance(result.result, TenantScopeError)


def test_task_body_runs_in_its_tenants_scope(alice_brand, charlie_brand):
    # charlie's invitation id, sent with alice's tenant id, finds nothing: the scope is alice's.
    invitation = services.invitation_create(
        tenant=charlie_brand.tenant,
        email="x@cafe.test",
        role="viewer",
        invited_by=charlie_brand.owner,
    ).invitation
    send_invitation_email.apply(args=[alice_brand.tenant.pk, invitation.pk, "http://x"])
    assert mail.outbox == []
    send_invitation_email.apply(args=[charlie_brand.tenant.pk, invitation.pk, "http://x"])
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["x@cafe.test"]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_invitation_email_goes_through_a_real_worker_on_redis(alice_brand):
    """Dashboard → on_commit → Redis broker → worker → task in the tenant's scope → email."""
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=[queue.value for queue in Queue],
        shutdown_timeout=10,
    ):
        client = signed_in(alice_brand.owner)
        response = client.post(
            reverse("settings_team"), {"email": "new.hire@bakery.test", "role": "marketer"}
        )
        assert response.status_code == 200
        assert wait_for(lambda: len(mail.outbox) == 1), "the worker never sent the email"
        # A task sent without a tenant is refused by the worker: no email.
        send_invitation_email.delay(None, 1, "http://x")
        assert send_invitation_email.route_queue == Queue.DEFAULT
        time.sleep(1)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.hire@bakery.test"]
    assert "Alice's Bakery" in message.subject
    with tenant_scope(alice_brand.tenant):
        token_hash = Invitation.objects.get(email="new.hire@bakery.test").token_hash
    assert "/invite/" in message.body and token_hash not in message.body


@tenant_task(queue=Queue.SCANS)
def scan_probe(tenant):
    return tenant.slug


def test_tenant_task_routes_to_its_declared_queue():
    route = celery_app.amqp.router.route({}, scan_probe.name, task_type=scan_probe)
    assert route["queue"].name == "scans"


def test_every_beat_entry_names_a_registered_task():
    celery_app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in celery_app.tasks, entry["task"]
