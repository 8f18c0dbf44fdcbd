"""Racing requests against real PostgreSQL: exactly once, never negative.

Each request runs on its own thread with its own database connection. All threads start
together at a barrier; the server side admits at most SERVER_SLOTS at a time, as a pool of
web workers would (PostgreSQL here allows 100 connections), so the rest queue at the door
exactly as they would in front of a real server.
"""

import threading
from collections import Counter

import pytest
from django.db import connections

from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member, PointsEntry, PointsLot, Redemption

from .conftest import Api

SERVER_SLOTS = 60


@pytest.fixture(autouse=True)
def room_for_the_race(settings):
    """A race sends up to 200 of one brand's requests at once, past the API's default burst
    (100); the rate limit has tests of its own (test_api_rate_limit.py)."""
    settings.API_RATE_BURST = 1000


def race(count: int, request) -> list:
    barrier = threading.Barrier(count)
    slots = threading.BoundedSemaphore(SERVER_SLOTS)
    results: list = [None] * count

    def run(i):
        barrier.wait()
        with slots:
            try:
                results[i] = request(i)
            finally:
                connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a request did not finish"
    return results


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_posts_of_one_order_award_once(alice_brand):
    api = Api(alice_brand.api_key)
    body = {"order_id": "race-1", "member": "new-customer", "subtotal": "75.00", "currency": "USD"}

    def post(_):
        response = api.post("orders", body)
        return response.status_code, response.content

    results = race(200, post)
    statuses = Counter(status for status, _ in results)
    assert statuses == Counter({201: 1, 200: 199})
    assert len({content for _, content in results}) == 1  # every body is the first body
    with tenant_scope(alice_brand.tenant):
        member = Member.objects.get(external_id="new-customer")
        assert member.points_balance == 75
        assert member.orders_count == 1
        assert PointsEntry.objects.filter(member=member).count() == 1
        assert Member.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_100_concurrent_redemptions_against_a_balance_for_10(alice_brand):
    api = Api(alice_brand.api_key)
    api.post("members", {"external_id": "rich"})
    api.post("members/rich/adjustments", {"points": 1050, "reason": "test balance"})
    reward = api.post(
        "rewards",
        {"name": "Coffee", "kind": "free_product", "points_cost": 100, "value": "SKU-COFFEE"},
    ).json()

    def redeem(_):
        response = api.post("members/rich/redemptions", {"reward_id": reward["id"]})
        return response.status_code, response.json()

    results = race(100, redeem)
    assert Counter(status for status, _ in results) == Counter({201: 10, 409: 90})
    codes = {body["code"] for status, body in results if status == 201}
    assert len(codes) == 10
    with tenant_scope(alice_brand.tenant):
        member = Member.objects.get(external_id="rich")
        assert member.points_balance == 50
        assert Redemption.objects.count() == 10
        entries = sum(PointsEntry.objects.filter(member=member).values_list("points", flat=True))
        lots = sum(PointsLot.objects.filter(member=member).values_list("remaining", flat=True))
        assert entries == lots == 50
