"""Settings → Webhooks: everyone reads, admins change; the secret is shown once; deliveries
are logged, filtered, paged, replayed and retried."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from hooks import tasks
from hooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from hooks.services.delivery import deliveries_send
from hooks.services.endpoints import delivery_replay, endpoint_secret, endpoint_test_send
from hooks.services.fan_out import events_fan_out
from loyaltysms.models import AuditEvent, Role
from loyaltysms.tenancy.context import tenant_scope

from ..conftest import add_member, signed_in
from .conftest import make_endpoint, order
from .receiver import verify

NEW = {"url": "https://crm.example/hooks", "description": "CRM", "events": ["points_earned"]}


def endpoints(brand) -> list[WebhookEndpoint]:
    with tenant_scope(brand.tenant):
        return list(WebhookEndpoint.objects.all())


def deliveries(brand) -> list[WebhookDelivery]:
    with tenant_scope(brand.tenant):
        return list(WebhookDelivery.objects.order_by("id"))


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(alice_client, alice_brand):
    response = alice_client.post(reverse("settings_webhooks"), NEW)
    assert response.status_code == 201
    secret = re.search(r'id="webhook-secret">(whsec_[\w-]+)<', response.content.decode()).group(1)
    (endpoint,) = endpoints(alice_brand)
    assert endpoint_secret(endpoint) == secret and endpoint.events == ["points_earned"]
    for url in (reverse("settings_webhooks"), reverse("webhook_endpoint", args=[endpoint.pk])):
        body = alice_client.get(url).content.decode()
        assert secret not in body and "crm.example" in body
    assert (
        secret[-4:]
        in alice_client.get(reverse("webhook_endpoint", args=[endpoint.pk])).content.decode()
    )
    with tenant_scope(alice_brand.tenant):
        assert AuditEvent.objects.filter(action="webhook.created").count() == 1


def test_rolling_the_secret_shows_the_new_one_once_and_signs_with_it(
    alice_client, alice_brand, receiver
):
    created = make_endpoint(alice_brand, receiver.url)
    response = alice_client.post(reverse("webhook_secret_roll", args=[created.endpoint.pk]))
    assert response.status_code == 200
    new = re.search(r'id="webhook-secret">(whsec_[\w-]+)<', response.content.decode()).group(1)
    assert new != created.secret
    now = timezone.now()
    endpoint_test_send(endpoint=created.endpoint, now=now, actor=None)
    deliveries_send(tenant=alice_brand.tenant, endpoint_id=created.endpoint.pk, now=lambda: now)
    (got,) = receiver.requests
    header = got.headers["X-Loyaltysms-Signature"]
    assert verify(new, header, got.body, now.timestamp())
    assert not verify(created.secret, header, got.body, now.timestamp())
    assert got.json["type"] == "test" and got.headers["X-Loyaltysms-Event"] == "test"


def test_http_is_refused_but_for_localhost(alice_client, alice_brand):
    response = alice_client.post(
        reverse("settings_webhooks"), {**NEW, "url": "http://crm.example/h"}
    )
    assert response.status_code == 422 and "https://" in response.content.decode()
    response = alice_client.post(reverse("settings_webhooks"), {**NEW, "events": []})
    assert response.status_code == 422
    response = alice_client.post(
        reverse("settings_webhooks"), {**NEW, "url": "http://localhost:8001/h"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MARKETER])
def test_viewers_and_marketers_read_but_change_nothing(alice_brand, role):
    created = make_endpoint(alice_brand, "https://crm.example/hooks")
    endpoint = created.endpoint
    delivery = endpoint_test_send(endpoint=endpoint, now=timezone.now(), actor=None)
    client = signed_in(add_member(alice_brand.tenant, f"{role}@bakery.test", role))
    page = client.get(reverse("settings_webhooks"))
    assert page.status_code == 200 and "crm.example" in page.content.decode()
    detail = client.get(reverse("webhook_endpoint", args=[endpoint.pk])).content.decode()
    assert "Roll secret" not in detail and "Replay" not in detail and "Retry now" not in detail
    assert created.secret not in detail
    for name, arg in [
        ("settings_webhooks", None),
        ("webhook_endpoint", endpoint.pk),
        ("webhook_endpoint_toggle", endpoint.pk),
        ("webhook_endpoint_delete", endpoint.pk),
        ("webhook_secret_roll", endpoint.pk),
        ("webhook_test_send", endpoint.pk),
        ("webhook_delivery_replay", delivery.pk),
        ("webhook_delivery_retry", delivery.pk),
    ]:
        url = reverse(name, args=[arg] if arg else [])
        assert client.post(url, {**NEW, "confirm": "yes"}).status_code == 403, name
    assert len(endpoints(alice_brand)) == 1 and len(deliveries(alice_brand)) == 1


def test_the_log_shows_attempts_answers_and_payload_newest_first_filtered_and_paged(
    alice_client, alice_brand, receiver, monkeypatch
):
    from hooks import views

    monkeypatch.setattr(views, "LOG_PAGE", 2)
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    now = timezone.now()
    for n in range(2):
        order(alice_brand, f"m{n}", n, now)
    events_fan_out(tenant=alice_brand.tenant, now=now)
    receiver.mode = "503"
    deliveries_send(tenant=alice_brand.tenant, endpoint_id=endpoint.pk, now=lambda: now)
    endpoint_test_send(endpoint=endpoint, now=now, actor=None)
    url = reverse("webhook_endpoint", args=[endpoint.pk])
    first = alice_client.get(url).content.decode()
    rows = deliveries(alice_brand)
    # Newest first.
    assert first.index(f"<td>{rows[2].pk}</td>") < first.index(f"<td>{rows[1].pk}</td>")
    assert f"<td>{rows[0].pk}</td>" not in first and 'rel="next"' in first
    assert "503" in first and "down for maintenance" in first
    assert "&quot;external_id&quot;: &quot;m1&quot;" in first  # the payload, as JSON
    nxt = re.search(r'href="(\?[^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = alice_client.get(url + nxt).content.decode()
    assert f"<td>{rows[0].pk}</td>" in second and f"<td>{rows[2].pk}</td>" not in second
    pending = alice_client.get(url, {"status": "pending"}).content.decode()
    assert "Retry now" in pending
    assert (
        "No delivered deliveries" in alice_client.get(url, {"status": "delivered"}).content.decode()
    )


def test_replay_sends_a_copy_and_retry_now_makes_a_pending_one_due(
    alice_client, alice_brand, receiver, monkeypatch
):
    woken = []
    monkeypatch.setattr(tasks.hooks_deliver, "delay", lambda *a: woken.append(a))
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    now = timezone.now()
    original = endpoint_test_send(endpoint=endpoint, now=now, actor=None)
    deliveries_send(tenant=alice_brand.tenant, endpoint_id=endpoint.pk, now=lambda: now)
    original.refresh_from_db()
    assert original.status == DeliveryStatus.DELIVERED

    pending = endpoint_test_send(endpoint=endpoint, now=now, actor=None)
    with pytest.raises(ValidationError):  # a pending one is retried, not replayed
        delivery_replay(delivery=pending, now=now, actor=None)
    assert (
        alice_client.post(reverse("webhook_delivery_replay", args=[pending.pk])).status_code == 302
    )

    response = alice_client.post(reverse("webhook_delivery_replay", args=[original.pk]))
    assert response.status_code == 302
    copy = deliveries(alice_brand)[-1]
    assert copy.replay_of_id == original.pk and copy.payload == original.payload
    assert copy.status == DeliveryStatus.PENDING and copy.pk != original.pk

    # Retry now: a pending delivery waiting for its next attempt is due at once.
    receiver.mode = "503"
    later = timezone.now()
    deliveries_send(tenant=alice_brand.tenant, endpoint_id=endpoint.pk, now=lambda: later)
    pending.refresh_from_db()
    assert pending.next_attempt_at > timezone.now()
    assert (
        alice_client.post(reverse("webhook_delivery_retry", args=[pending.pk])).status_code == 302
    )
    pending.refresh_from_db()
    assert pending.next_attempt_at <= timezone.now()
    receiver.mode = "up"
    deliveries_send(tenant=alice_brand.tenant, endpoint_id=endpoint.pk, now=timezone.now)
    assert {d.status for d in deliveries(alice_brand)} == {DeliveryStatus.DELIVERED}
    # The receiver saw the original and its copy under different delivery ids.
    ids = [r.delivery_id for r in receiver.delivered()]
    assert original.pk in ids and copy.pk in ids and len(ids) == len(set(ids))


def test_disable_enable_and_delete_with_confirmation(alice_client, alice_brand):
    endpoint = make_endpoint(alice_brand, "https://crm.example/hooks").endpoint
    endpoint_test_send(endpoint=endpoint, now=timezone.now(), actor=None)
    alice_client.post(reverse("webhook_endpoint_toggle", args=[endpoint.pk]))
    assert endpoints(alice_brand)[0].active is False
    assert deliveries(alice_brand)[0].status == DeliveryStatus.CANCELED
    alice_client.post(reverse("webhook_endpoint_toggle", args=[endpoint.pk]))
    assert endpoints(alice_brand)[0].active is True

    url = reverse("webhook_endpoint_delete", args=[endpoint.pk])
    page = alice_client.get(url).content.decode()
    assert '<button type="submit" class="danger">Yes, ' in page
    assert alice_client.post(url).status_code == 200  # asks first
    assert len(endpoints(alice_brand)) == 1
    assert alice_client.post(url, {"confirm": "yes"}).status_code == 302
    assert endpoints(alice_brand) == [] and deliveries(alice_brand) == []


def test_editing_an_endpoint(alice_client, alice_brand):
    endpoint = make_endpoint(alice_brand, "https://crm.example/hooks").endpoint
    response = alice_client.post(
        reverse("webhook_endpoint", args=[endpoint.pk]),
        {"url": "https://crm.example/v2", "description": "v2", "events": ["tier_changed"]},
    )
    assert response.status_code == 302
    (endpoint,) = endpoints(alice_brand)
    assert (endpoint.url, endpoint.events) == ("https://crm.example/v2", ["tier_changed"])


def test_another_brands_endpoint_and_deliveries_answer_404(alice_client, charlie_brand):
    endpoint = make_endpoint(charlie_brand, "https://charlie.example/hooks").endpoint
    delivery = endpoint_test_send(endpoint=endpoint, now=timezone.now(), actor=None)
    assert alice_client.get(reverse("webhook_endpoint", args=[endpoint.pk])).status_code == 404
    assert (
        alice_client.post(reverse("webhook_delivery_replay", args=[delivery.pk])).status_code == 404
    )
    assert "charlie.example" not in alice_client.get(reverse("settings_webhooks")).content.decode()


def test_the_tick_marks_brands_without_endpoints_and_wakes_the_rest(
    alice_brand, charlie_brand, monkeypatch
):
    from django.core.cache import cache

    woken = []
    monkeypatch.setattr(tasks.hooks_fan_out, "delay", lambda *a: woken.append(("fan_out", a)))
    monkeypatch.setattr(tasks.hooks_deliver, "delay", lambda *a: woken.append(("deliver", a)))
    endpoint = make_endpoint(alice_brand, "https://crm.example/hooks").endpoint
    now = timezone.now()
    order(alice_brand, "ann", 1, now)
    order(charlie_brand, "carl", 1, now)
    cache.delete_many(
        [tasks._key("fan-out", alice_brand.tenant.pk), tasks._key("deliver", endpoint.pk)]
    )
    report = tasks.hooks_tick()
    assert report["marked"] >= 3
    assert ("fan_out", (alice_brand.tenant.pk,)) in woken
    tasks.hooks_fan_out(alice_brand.tenant.pk)  # the task beat queued, run here
    assert ("deliver", (alice_brand.tenant.pk, endpoint.pk)) in woken
    cache.delete_many(
        [tasks._key("fan-out", alice_brand.tenant.pk), tasks._key("deliver", endpoint.pk)]
    )
