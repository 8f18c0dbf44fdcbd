"""Idempotency-Key on POST: the first response replayed, a different body refused."""

from loyaltysms.models import IdempotencyRecord
from loyaltysms.tenancy.context import tenant_scope

from .conftest import assert_problem


def test_same_key_and_body_replays_the_first_response(alice_api):
    body = {"external_id": "k1", "first_name": "Kim"}
    first = alice_api.post("members", body, **{"Idempotency-Key": "abc"})
    assert first.status_code == 201
    again = alice_api.post("members", body, **{"Idempotency-Key": "abc"})
    assert again.status_code == 201  # the first response, not a fresh 200 "updated"
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_same_key_with_another_body_is_422(alice_api):
    alice_api.post("members/adj/adjustments", {"points": 1, "reason": "x"})
    alice_api.post("members", {"external_id": "k2"}, **{"Idempotency-Key": "k"})
    other = alice_api.post("members", {"external_id": "k3"}, **{"Idempotency-Key": "k"})
    body = assert_problem(other, 422)
    assert body["type"] == "urn:loyaltysms:problem:idempotency-key-reused"
    assert alice_api.get("members/k3").status_code == 404


def test_a_problem_answer_is_replayed_too(alice_api):
    alice_api.post("members", {"external_id": "poor"})
    args = ("members/poor/adjustments", {"points": -5, "reason": "x"})
    assert_problem(alice_api.post(*args, **{"Idempotency-Key": "p"}), 409)
    alice_api.post("members/poor/adjustments", {"points": 10, "reason": "top up"})
    # Same key: the stored 409, not a fresh success that would take the points now.
    assert_problem(alice_api.post(*args, **{"Idempotency-Key": "p"}), 409)
    assert alice_api.get("members/poor").json()["points_balance"] == 10


def test_keys_are_per_brand(alice_api, charlie_api, alice_brand, charlie_brand):
    alice_api.post("members", {"external_id": "a"}, **{"Idempotency-Key": "same"})
    response = charlie_api.post("members", {"external_id": "c"}, **{"Idempotency-Key": "same"})
    assert response.status_code == 201 and response.json()["external_id"] == "c"
    with tenant_scope(alice_brand.tenant):
        assert IdempotencyRecord.objects.count() == 1


def test_an_unusable_key_is_400(alice_api):
    response = alice_api.post("members", {"external_id": "z"}, **{"Idempotency-Key": "x" * 300})
    assert_problem(response, 400)
