"""POST/GET /api/v1/members, /ledger and /adjustments as api.md writes them."""

import pytest

from .conftest import assert_problem

MEMBER_FIELDS = {
    "external_id",
    "phone",
    "email",
    "first_name",
    "last_name",
    "birthday",
    "enrolled_at",
    "points_balance",
    "points_pending",
    "lifetime_points",
    "lifetime_spend",
    "orders_count",
    "last_order_at",
    "tier",
    "next_tier",
    "points_expiring",
    "sms_status",
}


def test_upsert_creates_then_updates(alice_api):
    body = {
        "external_id": "cust-1",
        "phone": "(212) 555-0101",
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "birthday": "1990-04-12",
        "tags": ["vip"],
    }
    created = alice_api.post("members", body)
    assert created.status_code == 201
    member = created.json()
    assert member.keys() >= MEMBER_FIELDS
    assert member["phone"] == "+12125550101"
    assert member["birthday"] == "1990-04-12"
    assert member["points_balance"] == 0 and member["tier"] is None
    assert member["sms_status"] == "none"
    assert member["lifetime_spend"] == "0.00"

    updated = alice_api.post("members", {"external_id": "cust-1", "birthday": "--02-29"})
    assert updated.status_code == 200
    assert updated.json()["birthday"] == "--02-29"
    assert updated.json()["email"] == "ann@example.com"  # untouched fields stay


def test_member_found_by_phone_in_any_format(alice_api):
    alice_api.post("members", {"external_id": "p1", "phone": "+1 212 555 0102"})
    alice_api.post("members", {"external_id": "p2", "phone": "+12125550103"})
    found = alice_api.get("members?phone=212-555-0102").json()
    assert [m["external_id"] for m in found["results"]] == ["p1"]


def test_members_list_is_keyset_paginated(alice_api):
    for n in range(5):
        alice_api.post("members", {"external_id": f"m{n}"})
    first = alice_api.get("members?limit=2").json()
    assert [m["external_id"] for m in first["results"]] == ["m0", "m1"]
    second = alice_api.get(f"members?limit=2&cursor={first['next']}").json()
    assert [m["external_id"] for m in second["results"]] == ["m2", "m3"]
    third = alice_api.get(f"members?limit=2&cursor={second['next']}").json()
    assert [m["external_id"] for m in third["results"]] == ["m4"]
    assert third["next"] is None


def test_external_ids_with_slashes_work(alice_api):
    gid = "gid://shopify/Customer/42"
    assert alice_api.post("members", {"external_id": gid}).status_code == 201
    assert alice_api.get(f"members/{gid}").json()["external_id"] == gid
    assert (
        alice_api.post(
            f"members/{gid}/adjustments", {"points": 5, "reason": "goodwill"}
        ).status_code
        == 201
    )
    assert alice_api.get(f"members/{gid}/ledger").json()["results"][0]["points"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 256}, "external_id"),
        ({"external_id": "a", "phone": "12"}, "phone"),
        ({"external_id": "a", "phone": "not a phone"}, "phone"),
        ({"external_id": "a", "email": "nope"}, "email"),
        ({"external_id": "a", "birthday": "1990-02-30"}, "birthday"),
        ({"external_id": "a", "birthday": "--13-01"}, "birthday"),
        ({"external_id": "a", "birthday": "12/04/1990"}, "birthday"),
        ({"external_id": "a", "birthday": 19900412}, "birthday"),
        ({"external_id": "a", "tags": "vip"}, "tags"),
        ({"external_id": "a", "timezone": "Mars/Olympus"}, "timezone"),
        ({"external_id": ["a"]}, "external_id"),
    ],
)
def test_bad_member_input_is_a_400_problem(alice_api, body, field):
    assert_problem(alice_api.post("members", body), 400, field)


def test_not_json_is_a_problem_not_a_500(alice_api):
    response = alice_api.client.post(
        "/api/v1/members", data="{nope", content_type="application/json"
    )
    assert_problem(response, 400)
    response = alice_api.client.post(
        "/api/v1/members", data="a=b", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 415)


def test_unknown_member_is_404(alice_api):
    assert_problem(alice_api.get("members/ghost"), 404)
    assert_problem(alice_api.get("members/ghost/ledger"), 404)
    assert_problem(alice_api.post("members/ghost/adjustments", {"points": 1, "reason": "x"}), 404)


def test_adjustment_needs_reason_and_never_goes_negative(alice_api):
    alice_api.post("members", {"external_id": "adj"})
    assert_problem(alice_api.post("members/adj/adjustments", {"points": 10}), 400, "reason")
    assert_problem(
        alice_api.post("members/adj/adjustments", {"points": 0, "reason": "x"}), 400, "points"
    )
    entry = alice_api.post("members/adj/adjustments", {"points": 10, "reason": "apology"})
    assert entry.status_code == 201
    assert entry.json() | {"id": 0, "created_at": ""} == {
        "id": 0,
        "kind": "adjust",
        "points": 10,
        "balance_after": 10,
        "reason": "apology",
        "source": "manual by API",
        "source_ref": "api",
        "created_at": "",
        "expires_at": None,
    }
    body = assert_problem(
        alice_api.post("members/adj/adjustments", {"points": -11, "reason": "x"}), 409
    )
    assert body["type"] == "urn:loyaltysms:problem:insufficient-points"
    ok = alice_api.post("members/adj/adjustments", {"points": -10, "reason": "correction"})
    assert ok.json()["balance_after"] == 0


def test_ledger_lists_newest_first_with_reasons(alice_api):
    alice_api.post(
        "orders", {"order_id": "o-1", "member": "led", "subtotal": "20.00", "currency": "USD"}
    )
    alice_api.post("members/led/adjustments", {"points": -5, "reason": "typo"})
    ledger = alice_api.get("members/led/ledger").json()["results"]
    assert [(e["kind"], e["points"], e["balance_after"], e["source"]) for e in ledger] == [
        ("adjust", -5, 15, "manual by API"),
        ("earn", 20, 20, "order"),
    ]
    assert ledger[1]["reason"] == "Order o-1"


def test_bad_cursor_and_limit_are_400(alice_api):
    assert_problem(alice_api.get("members?cursor=garbage"), 400, "cursor")
    assert_problem(alice_api.get("members?limit=0"), 400, "limit")
    assert_problem(alice_api.get("members?limit=abc"), 400, "limit")
    assert_problem(alice_api.get("members?limit=1000"), 400, "limit")
