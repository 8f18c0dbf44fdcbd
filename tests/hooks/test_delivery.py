"""Deliveries reach a real local receiver: signed, in order per member, retried with backoff
while it is down (time driven by a clock, not by sleeping), given up after three days,
never sent twice at once by two workers, sent again after a worker dies mid-send."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection

from hooks.models import DeliveryStatus, WebhookDelivery
from hooks.services import delivery as delivery_service
from hooks.services.delivery import deliveries_send, retry_delay
from hooks.services.endpoints import endpoint_secret
from hooks.services.fan_out import events_fan_out
from loyaltysms.tenancy.context import tenant_scope
from messaging.services.subscribers import Evidence, subscriber_opt_in, subscriber_opt_out

from .conftest import make_endpoint, order
from .receiver import verify

NO_JITTER = {"jitter": lambda: 0.0}


def rows(brand) -> list[WebhookDelivery]:
    with tenant_scope(brand.tenant):
        return list(WebhookDelivery.objects.order_by("id"))


def send(brand, endpoint, clock, **kwargs):
    return deliveries_send(tenant=brand.tenant, endpoint_id=endpoint.pk, now=clock, **kwargs)


def sequence_per_member(requests) -> dict[str, list[int]]:
    seen = defaultdict(list)
    for r in requests:
        seen[r.json["member"]["external_id"]].append(r.json["id"])
    return dict(seen)


def test_events_reach_the_receiver_signed(alice_brand, receiver, clock):
    created = make_endpoint(alice_brand, receiver.url)
    order(alice_brand, "ann", 1, clock())
    subscriber = subscriber_opt_in(
        tenant=alice_brand.tenant,
        phone="+12125550142",
        evidence=Evidence(source="api", disclosure_text="x"),
        now=clock(),
        double_opt_in=False,
    )
    subscriber_opt_out(subscriber=subscriber, evidence=Evidence(source="dashboard"), now=clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    sent = send(alice_brand, created.endpoint, clock)
    assert sent.delivered == 3
    # Different members' deliveries go out side by side: their arrival order is free.
    got = sorted(receiver.delivered(), key=lambda r: r.delivery_id)
    assert [r.headers["X-Loyaltysms-Event"] for r in got] == [
        "points_earned",
        "sms_subscribed",
        "sms_unsubscribed",
    ]
    for r in got:
        assert r.headers["Content-Type"] == "application/json"
        assert verify(
            created.secret, r.headers["X-Loyaltysms-Signature"], r.body, clock().timestamp()
        )
        assert not verify(
            "whsec_wrong", r.headers["X-Loyaltysms-Signature"], r.body, clock().timestamp()
        )
        # Outside the replay window, a valid signature is refused.
        assert not verify(
            created.secret, r.headers["X-Loyaltysms-Signature"], r.body, clock().timestamp() + 3600
        )
    assert got[0].json["member"]["external_id"] == "ann"
    assert got[1].json["member"] is None  # a number that isn't a member
    assert got[1].json["data"]["phone"] == "+12125550142"
    assert {r.delivery_id for r in got} == {d.pk for d in rows(alice_brand)}
    assert all(d.status == DeliveryStatus.DELIVERED and d.attempts == 1 for d in rows(alice_brand))
    assert send(alice_brand, created.endpoint, clock).delivered == 0  # nothing twice


def test_receiver_down_for_a_while_retries_with_backoff_then_delivers_in_order(
    alice_brand, receiver, clock
):
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    for n in range(3):  # interleaved: ann 0, bea 0, ann 1, bea 1, …
        order(alice_brand, "ann", n, clock())
        order(alice_brand, "bea", n, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    receiver.stop()  # connection refused
    start = clock()

    sent = send(alice_brand, endpoint, clock, **NO_JITTER)
    assert (sent.delivered, sent.retrying) == (0, 2)  # one head per member, the rest wait
    heads = [d for d in rows(alice_brand) if d.attempts]
    assert len(heads) == 2
    assert all(d.next_attempt_at == start + timedelta(seconds=10) for d in heads)
    assert all("Connect" in d.last_error and d.last_status_code is None for d in heads)

    clock.advance(seconds=5)
    assert send(alice_brand, endpoint, clock, **NO_JITTER).retrying == 0  # not due yet
    # 10 s, 20 s, 40 s, 80 s: each retry twice as late as the one before.
    for attempts, wait in [(2, 10), (3, 20), (4, 40)]:
        clock.now = start + timedelta(seconds=sum(10 * 2**i for i in range(attempts - 1)))
        assert send(alice_brand, endpoint, clock, **NO_JITTER).retrying == 2
        for d in rows(alice_brand):
            if d.attempts:
                assert d.attempts == attempts
                assert d.next_attempt_at - d.last_attempt_at == timedelta(seconds=wait * 2)

    receiver.start()
    receiver.mode = "503"  # up, but answering errors
    clock.advance(minutes=5)
    assert send(alice_brand, endpoint, clock, **NO_JITTER).retrying == 2
    assert {d.last_status_code for d in rows(alice_brand) if d.attempts} == {503}
    assert "down for maintenance" in rows(alice_brand)[0].last_error

    receiver.mode = "up"
    clock.advance(minutes=30)
    sent = send(alice_brand, endpoint, clock, **NO_JITTER)
    assert sent.delivered == 6
    got = receiver.delivered()
    assert len(got) == len({r.delivery_id for r in got}) == 6  # each once
    events = {d.event_id: d for d in rows(alice_brand)}
    ann = sorted(e for e, d in events.items() if d.payload["member"]["external_id"] == "ann")
    bea = sorted(e for e, d in events.items() if d.payload["member"]["external_id"] == "bea")
    assert sequence_per_member(got) == {"ann": ann, "bea": bea}
    assert all(d.status == DeliveryStatus.DELIVERED for d in rows(alice_brand))
    assert [d.attempts for d in rows(alice_brand)][:2] == [6, 6]


def test_after_three_days_failing_a_delivery_is_given_up_and_the_next_goes(
    alice_brand, receiver, clock
):
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    order(alice_brand, "ann", 1, clock())
    order(alice_brand, "ann", 2, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    receiver.mode = "503"
    send(alice_brand, endpoint, clock)
    clock.advance(days=2, hours=23)
    send(alice_brand, endpoint, clock)
    first, second = rows(alice_brand)
    assert first.status == DeliveryStatus.PENDING and second.attempts == 0
    clock.advance(hours=1, seconds=1)
    receiver.mode = "up"
    receiver.stop()  # still down when its last chance comes
    sent = send(alice_brand, endpoint, clock)
    first, second = rows(alice_brand)
    assert first.status == DeliveryStatus.FAILED and first.attempts == 3
    # The member's next one went in the same round (its first attempt fails too, and as
    # it's also three days old, it's given up at once).
    assert second.attempts == 1 and second.status == DeliveryStatus.FAILED
    assert sent.failed == 2


def test_retry_delay_doubles_from_ten_seconds_up_to_an_hour_with_jitter():
    assert [retry_delay(n, lambda: 0.0).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(9, lambda: 0.0).total_seconds() == 2560
    assert retry_delay(10, lambda: 0.0) == timedelta(hours=1)
    assert retry_delay(500, lambda: 0.0) == timedelta(hours=1)
    assert retry_delay(1, lambda: 0.999).total_seconds() == pytest.approx(7.5, abs=0.01)
    delays = {retry_delay(3).total_seconds() for _ in range(50)}
    assert all(30 <= d <= 40 for d in delays) and len(delays) > 1  # spread, never longer


def test_a_slow_receiver_times_out_and_is_retried(alice_brand, receiver, clock, monkeypatch):
    monkeypatch.setattr(delivery_service, "TOTAL_TIMEOUT", 0.3)
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    order(alice_brand, "ann", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    receiver.delay = 1
    assert send(alice_brand, endpoint, clock).retrying == 1
    (d,) = rows(alice_brand)
    assert d.status == DeliveryStatus.PENDING and d.last_error == "Timed out"


def test_a_worker_dying_mid_send_leaves_the_delivery_to_be_sent_again(
    alice_brand, receiver, clock, monkeypatch
):
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    order(alice_brand, "ann", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())

    def die(*args):
        raise SystemExit("worker lost")  # after the receiver had the request

    monkeypatch.setattr(delivery_service, "_settle", die)
    with pytest.raises(SystemExit):
        send(alice_brand, endpoint, clock)
    (d,) = rows(alice_brand)
    assert d.status == DeliveryStatus.PENDING and d.attempts == 0
    monkeypatch.undo()
    assert send(alice_brand, endpoint, clock).delivered == 1
    # At least once: the receiver saw it twice, with the same delivery id to dedupe by.
    assert [r.delivery_id for r in receiver.requests] == [d.pk, d.pk]


def test_a_disabled_or_other_brands_endpoint_is_sent_nothing(
    alice_brand, charlie_brand, receiver, clock
):
    from hooks.services.endpoints import endpoint_set_active

    alice = make_endpoint(alice_brand, receiver.url).endpoint
    charlie = make_endpoint(charlie_brand, receiver.url.replace("/hooks", "/charlie")).endpoint
    order(alice_brand, "ann", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    events_fan_out(tenant=charlie_brand.tenant, now=clock())
    # Charlie's endpoint id under alice's brand finds nothing.
    assert send(alice_brand, charlie, clock).delivered == 0
    assert send(charlie_brand, charlie, clock).delivered == 0
    endpoint_set_active(endpoint=alice, active=False, now=clock(), actor=None)
    assert send(alice_brand, alice, clock).delivered == 0
    assert receiver.requests == []
    assert [d.status for d in rows(alice_brand)] == [DeliveryStatus.CANCELED]


def test_the_secret_is_stored_encrypted(alice_brand):
    created = make_endpoint(alice_brand, "https://a.example/1")
    endpoint = created.endpoint
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_encrypted FROM hooks_webhookendpoint WHERE id = %s", [endpoint.pk]
        )
        stored = bytes(cursor.fetchone()[0])
    assert created.secret.encode() not in stored
    assert endpoint_secret(endpoint) == created.secret


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_a_delivery_twice_and_keep_each_members_order(
    alice_brand, receiver, clock
):
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    members = ["ann", "bea", "cat", "dan"]
    for n in range(3):
        for m in members:
            order(alice_brand, m, n, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    receiver.delay = 0.15  # sends overlap
    start = threading.Barrier(2)
    errors = []

    def worker():
        try:
            start.wait(5)
            send(alice_brand, endpoint, clock, batch=2)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    got = receiver.delivered()
    assert len(got) == 12 and len({r.delivery_id for r in got}) == 12
    per_member = sequence_per_member(got)
    assert all(seq == sorted(seq) for seq in per_member.values()), per_member
    assert all(d.status == DeliveryStatus.DELIVERED and d.attempts == 1 for d in rows(alice_brand))


def test_settled_deliveries_are_purged_after_their_keeping_time(alice_brand, receiver, clock):
    from hooks.services.delivery import KEEP_DELIVERED, KEEP_SETTLED, deliveries_purge

    created = make_endpoint(alice_brand, receiver.url)
    for n in range(3):
        order(alice_brand, f"m{n}", n, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    send(alice_brand, created.endpoint, clock)
    with tenant_scope(alice_brand.tenant):
        _first, second, third = WebhookDelivery.objects.order_by("id")
        WebhookDelivery.objects.filter(pk=second.pk).update(status=DeliveryStatus.FAILED)
        WebhookDelivery.objects.filter(pk=third.pk).update(status=DeliveryStatus.PENDING)
    assert deliveries_purge(now=clock() + KEEP_DELIVERED + timedelta(hours=1)) == 1  # delivered
    assert deliveries_purge(now=clock() + KEEP_SETTLED + timedelta(hours=1)) == 1  # failed
    with tenant_scope(alice_brand.tenant):
        assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [third.pk]
