"""The outbox fanned out to endpoints: once per event and subscribed endpoint, even with two
workers or a crash in between; other brands' endpoints never see an event."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection
from django.test import Client

from hooks.models import WebhookDelivery
from hooks.services import fan_out
from hooks.services.fan_out import events_fan_out, events_mark_without_endpoints
from loyaltysms.tenancy.context import tenant_scope
from messaging.services.setup import sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in, subscriber_opt_out
from programs.models import LoyaltyEvent
from programs.services.program import reward_create, tier_create
from programs.services.rewards import redemption_create

from ..messaging.conftest import Phone
from .conftest import make_endpoint, order


def deliveries(brand) -> list[WebhookDelivery]:
    with tenant_scope(brand.tenant):
        return list(WebhookDelivery.objects.order_by("id"))


def unhooked(brand) -> int:
    with tenant_scope(brand.tenant):
        return LoyaltyEvent.objects.filter(hooked_at__isnull=True).count()


def test_events_of_the_real_services_become_deliveries_in_their_public_shape(alice_brand, clock):
    endpoint = make_endpoint(alice_brand, "https://crm.example/hooks").endpoint
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        tier_create(
            tenant=tenant, name="Gold", threshold=Decimal(100), basis="spend", period="lifetime"
        )
    recorded = order(alice_brand, "ann", 1, clock(), subtotal="150")  # points, then Gold
    member = recorded.order.member
    with tenant_scope(tenant):
        reward = reward_create(
            tenant=tenant, name="Free coffee", kind="custom", points_cost=50, value="coffee"
        )
        redemption = redemption_create(member=member, reward=reward, now=clock())
    subscriber = subscriber_opt_in(
        tenant=tenant,
        phone="+12125550142",
        evidence=Evidence(source="checkout", disclosure_text="Texts from Alice"),
        now=clock(),
        double_opt_in=False,
        member=member,
    )
    subscriber_opt_out(subscriber=subscriber, evidence=Evidence(source="keyword"), now=clock())

    assert events_fan_out(tenant=tenant, now=clock()) >= 5
    rows = deliveries(alice_brand)
    kinds = [d.event_kind for d in rows]
    # member_enrolled, order_placed, points_redeemed: no endpoint takes them.
    assert kinds == [
        "points_earned",
        "tier_changed",
        "reward_redeemed",
        "sms_subscribed",
        "sms_unsubscribed",
    ]
    assert {d.endpoint_id for d in rows} == {endpoint.pk}
    assert {d.member_key for d in rows} == {f"m{member.pk}"}
    earned, tier, redeemed, subscribed, unsubscribed = (d.payload for d in rows)
    assert earned["type"] == "points_earned" and earned["brand"] == "alices-bakery"
    assert earned["member"]["external_id"] == "ann"
    assert earned["data"] == {"points": 150, "source": "order", "order_id": "ann-1"}
    assert earned["created_at"].endswith("Z") and isinstance(earned["id"], int)
    assert tier["data"]["direction"] == "up" and tier["data"]["to_tier"] == "Gold"
    assert redeemed["data"]["code"] == redemption.code
    assert subscribed["data"] == {"source": "checkout", "phone": "+12125550142"}
    assert unsubscribed["data"] == {"source": "keyword", "phone": "+12125550142"}
    assert unhooked(alice_brand) == 0


def test_only_the_events_an_endpoint_subscribes_to(alice_brand, clock):
    tiers = make_endpoint(alice_brand, "https://a.example/t", ["tier_changed"]).endpoint
    points = make_endpoint(alice_brand, "https://a.example/p", ["points_earned"]).endpoint
    order(alice_brand, "ann", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    assert [(d.endpoint_id, d.event_kind) for d in deliveries(alice_brand)] == [
        (points.pk, "points_earned")
    ]
    assert tiers.pk  # subscribed to nothing that happened


def test_an_event_is_fanned_out_once_when_the_task_runs_again(alice_brand, clock):
    make_endpoint(alice_brand, "https://a.example/1")
    make_endpoint(alice_brand, "https://a.example/2")
    for n in range(3):
        order(alice_brand, "ann", n, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())  # redelivered task
    assert len(deliveries(alice_brand)) == 6
    order(alice_brand, "ann", 9, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    assert len(deliveries(alice_brand)) == 8


def test_a_crash_before_the_mark_leaves_no_deliveries_and_the_events_to_redo(
    alice_brand, clock, monkeypatch
):
    make_endpoint(alice_brand, "https://a.example/1")
    order(alice_brand, "ann", 1, clock())
    monkeypatch.setattr(fan_out, "MARK_HOOKED", "SELECT no_such_column FROM programs_loyaltyevent")
    with pytest.raises(DatabaseError):
        events_fan_out(tenant=alice_brand.tenant, now=clock())
    assert deliveries(alice_brand) == [] and unhooked(alice_brand) > 0
    monkeypatch.undo()
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    assert len(deliveries(alice_brand)) == 1 and unhooked(alice_brand) == 0


def test_batches_go_in_event_order(alice_brand, clock):
    make_endpoint(alice_brand, "https://a.example/1")
    for n in range(7):
        order(alice_brand, f"m{n % 2}", n, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock(), batch=2)
    rows = deliveries(alice_brand)
    assert len(rows) == 7
    assert [d.event_id for d in rows] == sorted(d.event_id for d in rows)


def test_other_brands_endpoints_never_get_this_brands_events(alice_brand, charlie_brand, clock):
    alice = make_endpoint(alice_brand, "https://alice.example/hooks").endpoint
    charlie = make_endpoint(charlie_brand, "https://charlie.example/hooks").endpoint
    order(alice_brand, "ann", 1, clock())
    order(charlie_brand, "carl", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    events_fan_out(tenant=charlie_brand.tenant, now=clock())
    assert [
        (d.endpoint_id, d.payload["member"]["external_id"]) for d in deliveries(alice_brand)
    ] == [(alice.pk, "ann")]
    assert [
        (d.endpoint_id, d.payload["member"]["external_id"]) for d in deliveries(charlie_brand)
    ] == [(charlie.pk, "carl")]


def test_events_of_brands_without_endpoints_are_marked_in_bulk(alice_brand, charlie_brand, clock):
    make_endpoint(alice_brand, "https://alice.example/hooks")
    order(alice_brand, "ann", 1, clock())
    order(charlie_brand, "carl", 1, clock())
    with_endpoints, without = fan_out.tenants_to_fan_out()
    assert alice_brand.tenant.pk in with_endpoints and charlie_brand.tenant.pk in without
    # Even named by mistake, a brand with an endpoint keeps its events for its fan-out.
    marked = events_mark_without_endpoints(
        tenant_ids=[alice_brand.tenant.pk, charlie_brand.tenant.pk], now=clock()
    )
    assert marked == 3  # carl: enrolled, order placed, points earned
    assert unhooked(charlie_brand) == 0 and unhooked(alice_brand) == 3
    assert deliveries(charlie_brand) == []


def test_the_flow_engines_marker_is_left_alone(alice_brand, clock):
    make_endpoint(alice_brand, "https://a.example/1")
    order(alice_brand, "ann", 1, clock())
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    with tenant_scope(alice_brand.tenant):
        assert LoyaltyEvent.objects.filter(processed_at__isnull=False).count() == 0


def _in_threads(target, n=2):
    errors = []

    def run():
        try:
            target()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_two_workers_fan_out_each_event_exactly_once(alice_brand, clock):
    make_endpoint(alice_brand, "https://a.example/1")
    make_endpoint(alice_brand, "https://a.example/2")
    for n in range(40):
        order(alice_brand, f"m{n % 5}", n, clock())
    start = threading.Barrier(2)

    def worker():
        start.wait(5)
        while events_fan_out(tenant=alice_brand.tenant, now=clock(), batch=7):
            pass

    _in_threads(worker)
    rows = deliveries(alice_brand)
    assert len(rows) == 80
    assert len({(d.event_id, d.endpoint_id) for d in rows}) == 80
    assert unhooked(alice_brand) == 0


@pytest.mark.django_db(transaction=True)
def test_without_the_brand_lock_the_conditional_mark_still_fans_out_once(
    alice_brand, clock, monkeypatch
):
    """Both workers read the same batch (the advisory lock is taken away); the one that
    marks second finds the events marked and rolls its deliveries back."""
    make_endpoint(alice_brand, "https://a.example/1")
    for n in range(6):
        order(alice_brand, "ann", n, clock())
    monkeypatch.setattr(fan_out, "BRAND_LOCK", "SELECT true")
    both_read = threading.Barrier(2)
    original = fan_out._deliveries

    def deliveries_after_both_read(*args):
        both_read.wait(5)
        return original(*args)

    monkeypatch.setattr(fan_out, "_deliveries", deliveries_after_both_read)
    results = []
    events = unhooked(alice_brand)
    _in_threads(lambda: results.append(events_fan_out(tenant=alice_brand.tenant, now=clock())))
    assert sorted(results) == [0, events]
    rows = deliveries(alice_brand)
    assert len(rows) == 6 and len({d.event_id for d in rows}) == 6


def test_a_manual_adjustment_says_manual_without_the_teammates_email(alice_brand, clock):
    from programs.services.members import points_adjust

    make_endpoint(alice_brand, "https://a.example/1")
    member = order(alice_brand, "ann", 1, clock()).order.member
    with tenant_scope(alice_brand.tenant):
        points_adjust(
            member=member, points=5, reason="goodwill", now=clock(), actor=alice_brand.owner
        )
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    last = deliveries(alice_brand)[-1].payload
    assert last["data"] == {"points": 5, "source": "manual"}
    assert "alice@" not in str(last)


def test_a_stop_by_text_is_an_unsubscribed_event_too(alice_brand, clock):
    """STOP takes the webhook's one-statement path (messaging.services.inbound), which writes
    the same outbox event as every other opt-out."""
    make_endpoint(alice_brand, "https://a.example/stop", ["sms_unsubscribed"])
    handset = Phone("+12125550177", sender_default(alice_brand.tenant), Client())
    handset.text("JOIN")
    handset.text("Y")
    handset.text("STOP")
    handset.text("STOP")  # unsubscribed already: nothing more
    events_fan_out(tenant=alice_brand.tenant, now=clock())
    (delivery,) = deliveries(alice_brand)
    assert delivery.event_kind == "sms_unsubscribed"
    assert delivery.payload["data"] == {"source": "keyword", "phone": "+12125550177"}
