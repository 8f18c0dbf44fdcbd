"""The REST API's per-brand rate limit: a brand over it gets 429 with Retry-After before
anything is done, other brands don't notice, staff can give one brand more, and the API keeps
answering while the Redis cache that counts is down."""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client

from loyaltysms import throttling
from loyaltysms.models import ApiKey, IdempotencyRecord, Tenant
from loyaltysms.services import api_key_create, api_key_revoke
from loyaltysms.tenancy.context import tenant_scope
from loyaltysms.throttling import forget_keys
from messaging.ratelimit import redis_client
from programs.models import Member, Order
from storefront.services import widget_get, widget_update

from ..outage import cache_down
from .conftest import Api, assert_problem

# A slow refill, so that the few milliseconds between a test's requests refill nothing.
SLOW = 0.2


@pytest.fixture
def limit(settings):
    """Every brand may send 3 requests at once, then one every 5 seconds, from a full bucket
    (a bucket left by an earlier run, whose brands had the same ids, is emptied first)."""
    settings.API_RATE_PER_SECOND = SLOW
    settings.API_RATE_BURST = 3
    client = redis_client(settings.REDIS_URL)
    for key in client.scan_iter(match="*throttle:api:*"):
        client.delete(key)
    forget_keys()


@pytest.fixture
def asked(monkeypatch) -> list[bool]:
    """Each question to the brand's bucket from here on: True a draw, False only a look."""
    questions = []
    draw = throttling._draw

    def counted(*args, **kwargs):
        questions.append(kwargs.get("take", True))
        return draw(*args, **kwargs)

    monkeypatch.setattr(throttling, "_draw", counted)
    return questions


def order(api: Api, order_id: str, **headers):
    body = {"order_id": order_id, "member": "cust", "subtotal": "10.00", "currency": "USD"}
    return api.post("orders", body, **headers)


def test_a_brand_over_its_limit_gets_429_with_retry_after_and_nothing_is_written(
    limit, alice_api, alice_brand
):
    answers = [alice_api.get("program") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0]["X-RateLimit-Limit"] == "3"

    refused = order(alice_api, "o-1", HTTP_IDEMPOTENCY_KEY="k-1")

    body = assert_problem(refused, 429)
    assert body["type"] == "urn:loyaltysms:problem:throttled"
    assert int(refused["Retry-After"]) in range(1, 6)  # whole seconds, within the burst's refill
    assert refused["X-RateLimit-Remaining"] == "0"
    with tenant_scope(alice_brand.tenant):
        assert not Order.objects.exists()
        assert not Member.objects.exists()
        assert not IdempotencyRecord.objects.exists()


def test_a_refusal_costs_no_query_once_the_process_knows_the_key(
    limit, alice_api, alice_brand, django_assert_num_queries, caplog
):
    """A flood past the limit is refused before the key's row is read (the process met the
    key and refused its brand within KEY_MEMORY_SECONDS), and isn't written to the log
    request by request."""
    with caplog.at_level(logging.WARNING):
        answers = [alice_api.get("program").status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]  # the first refusal reads the key as usual
        with django_assert_num_queries(0):
            refused = [order(alice_api, f"o-{n}") for n in range(20)]
    assert {r.status_code for r in refused} == {429}
    assert all(int(r["Retry-After"]) in range(1, 6) for r in refused)
    assert {r["X-RateLimit-Remaining"] for r in refused} == {"0"}
    assert_problem(refused[-1], 429)
    assert not [r for r in caplog.records if r.name == "django.request"]
    # One line for the brand's first refusal, then one a minute with the count.
    noted = [r for r in caplog.records if r.getMessage() == "brand over its API rate limit"]
    assert [(r.tenant, r.refused) for r in noted] == [(alice_brand.tenant.pk, 1)]


def test_refusals_are_logged_as_a_count_per_brand(limit, alice_api, monkeypatch, caplog):
    monkeypatch.setattr(throttling, "REFUSALS_LOG_SECONDS", 0.5)
    for _ in range(3):
        alice_api.get("program")
    with caplog.at_level(logging.WARNING, logger="loyaltysms.throttling"):
        for _ in range(5):
            assert alice_api.get("program").status_code == 429
        time.sleep(0.6)
        assert alice_api.get("program").status_code == 429
    assert [r.refused for r in caplog.records] == [1, 5]  # the first; then the 4 + 1 since
    assert caplog.records[0].seconds == 0 and caplog.records[1].seconds >= 1  # over ≥ 0.6 s


def test_a_known_key_with_a_wrong_secret_is_not_taken_for_it(limit, alice_api, alice_brand):
    answers = [alice_api.get("program").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]  # the process knows the key, its brand is over
    prefix = alice_brand.api_key.split("_")[1]
    forged = Api(f"lsk_{prefix}_{'x' * 43}")
    for _ in range(5):
        assert_problem(forged.get("program"), 401)  # not the brand's 429: not its key


def test_a_brand_under_its_limit_asks_the_cache_once_a_request(limit, alice_api, asked):
    assert [alice_api.get("program").status_code for _ in range(3)] == [200] * 3
    assert asked == [True] * 3  # the throttle's draw only: no look before authentication


def test_a_revoked_key_is_refused_at_once_and_draws_nothing(limit, alice_api, alice_brand):
    assert alice_api.get("program").status_code == 200  # the process now knows the key
    with tenant_scope(alice_brand.tenant):
        api_key_revoke(api_key=ApiKey.objects.get())
    for _ in range(5):
        refused = alice_api.get("program")
        assert_problem(refused, 401)
        assert "X-RateLimit-Remaining" not in refused
    other = Api(api_key_create(tenant=alice_brand.tenant, name="second store").raw_key)
    assert [other.get("program").status_code for _ in range(3)] == [200, 200, 429]


def test_a_known_key_asks_the_dead_cache_once_a_request(limit, alice_api, caplog, asked):
    """A brand refused lately is looked up before authentication; with the cache down, that
    failure lets the request through, and the throttle doesn't wait for the cache again."""
    answers = [alice_api.get("program").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]  # the process now knows the key and the refusal
    asked.clear()
    with caplog.at_level(logging.WARNING, logger="loyaltysms.throttling"), cache_down():
        assert [alice_api.get("program").status_code for _ in range(3)] == [200] * 3
    assert asked == [False] * 3  # the look before authentication, never the throttle after
    assert [m for m in caplog.messages if m.endswith(": no cache")] == [
        "rate limit skipped: no cache"
    ] * 3


def test_another_brand_at_the_same_moment_is_unaffected(limit, alice_api, charlie_api):
    for _ in range(3):
        alice_api.get("program")
    assert alice_api.get("program").status_code == 429

    answers = [charlie_api.get("program") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert alice_api.get("program").status_code == 429  # and alice is still refused


def test_all_of_a_brands_keys_share_its_limit(limit, alice_brand):
    other_key = api_key_create(tenant=alice_brand.tenant, name="second store").raw_key
    first, second = Api(alice_brand.api_key), Api(other_key)
    statuses = [api.get("program").status_code for api in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]


def test_a_brand_given_more_by_staff_gets_more(limit, alice_api, alice_brand, charlie_api):
    Tenant.objects.filter(pk=alice_brand.tenant.pk).update(api_rate_burst=6)

    alice = [alice_api.get("program").status_code for _ in range(7)]
    charlie = [charlie_api.get("program").status_code for _ in range(4)]

    assert alice == [200] * 6 + [429]
    assert charlie == [200] * 3 + [429]


def test_the_rate_refills_the_bucket(settings, alice_api):
    settings.API_RATE_PER_SECOND = 1000  # a request's worth every millisecond
    settings.API_RATE_BURST = 1
    assert alice_api.get("program").status_code == 200
    # A request takes more than a millisecond: the next one finds the bucket refilled.
    assert [alice_api.get("program").status_code for _ in range(5)] == [200] * 5


def test_requests_without_a_valid_key_are_not_counted(limit, alice_api):
    stranger = Api("lsk_nope_nope")
    for _ in range(5):
        assert_problem(stranger.get("program"), 401)
    assert_problem(Client().get("/api/v1/program"), 401)
    assert [alice_api.get("program").status_code for _ in range(3)] == [200, 200, 200]


def test_the_widget_is_not_under_the_api_limit(limit, alice_api, alice_brand):
    widget = widget_update(widget=widget_get(alice_brand.tenant), origins=[], enabled=True)
    for _ in range(3):
        alice_api.get("program")
    assert alice_api.get("program").status_code == 429

    response = Client().get(f"/widget/v1/{widget.publishable_key}/config")

    assert response.status_code == 200, response.content
    assert "X-RateLimit-Limit" not in response


def test_the_api_answers_while_the_cache_is_down(limit, alice_api, alice_brand, caplog):
    with caplog.at_level(logging.WARNING, logger="loyaltysms.throttling"), cache_down():
        reads = [alice_api.get("program").status_code for _ in range(5)]
        created = order(alice_api, "o-1")
    assert reads == [200] * 5
    assert created.status_code == 201, created.content
    assert "X-RateLimit-Limit" not in created
    assert any(m.endswith(": no cache") for m in caplog.messages)  # the let-through is logged


def test_the_schema_documents_the_429(db):
    schema = Client().get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)
    refused = schema["paths"]["/api/v1/orders"]["post"]["responses"]["429"]
    assert "Retry-After" in refused["headers"]
