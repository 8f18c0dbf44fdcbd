"""Rewards, redemptions, the program and tiers over the API."""

import pytest

from .conftest import assert_problem


def earn(api, points: int, member="cust"):
    api.post("members", {"external_id": member})
    return api.post(f"members/{member}/adjustments", {"points": points, "reason": "test"})


def test_a_new_brand_has_a_working_program(alice_api):
    program = alice_api.get("program").json()
    assert program["points_name"] == "points"
    assert program["currency"] == "USD"
    assert program["earn_rate"] == "1.0000"
    assert program["tiers"] == [] and program["rewards"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"earn_rate": "-1"}, "earn_rate"),
        ({"earn_rate": "abc"}, "earn_rate"),
        ({"rounding": "sideways"}, "rounding"),
        ({"expiry_policy": "lot"}, "expiry_days"),
        ({"expiry_policy": "forever"}, "expiry_policy"),
        ({"pending_days": -1}, "pending_days"),
        ({"enrollment_bonus": 1.5}, "enrollment_bonus"),
    ],
)
def test_bad_program_changes_are_400(alice_api, body, field):
    assert_problem(alice_api.patch("program", body), 400, field)


def test_program_patch(alice_api):
    program = alice_api.patch(
        "program", {"points_name": "beans", "expiry_policy": "lot", "expiry_days": 365}
    ).json()
    assert program["points_name"] == "beans" and program["expiry_days"] == 365


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("fixed_amount", "5", "5.00"),
        ("fixed_amount", 7.5, "7.50"),
        ("percent_off", 15, "15"),
        ("free_shipping", None, None),
        ("free_product", "SKU-1", "SKU-1"),
        ("custom", "A tote bag", "A tote bag"),
    ],
)
def test_reward_kinds(alice_api, kind, value, stored):
    body = {"name": kind, "kind": kind, "points_cost": 100}
    if value is not None:
        body["value"] = value
    response = alice_api.post("rewards", body)
    assert response.status_code == 201, response.content
    assert response.json()["value"] == stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "fixed_amount", "points_cost": 100}, "value"),
        ({"name": "x", "kind": "fixed_amount", "points_cost": 100, "value": "-5"}, "value"),
        ({"name": "x", "kind": "percent_off", "points_cost": 100, "value": 150}, "value"),
        ({"name": "x", "kind": "free_product", "points_cost": 100}, "value"),
        ({"name": "x", "kind": "cashback", "points_cost": 100}, "kind"),
        ({"name": "x", "kind": "custom", "points_cost": 0, "value": "y"}, "points_cost"),
        ({"kind": "custom", "points_cost": 10, "value": "y"}, "name"),
        ({"name": "x", "kind": "custom", "points_cost": 10, "value": {"a": 1}}, "value"),
    ],
)
def test_bad_rewards_are_400(alice_api, body, field):
    assert_problem(alice_api.post("rewards", body), 400, field)


def test_redeem_use_and_cancel(alice_api):
    reward = alice_api.post(
        "rewards", {"name": "$5 off", "kind": "fixed_amount", "points_cost": 100, "value": "5.00"}
    ).json()
    earn(alice_api, 150)
    redeemed = alice_api.post("members/cust/redemptions", {"reward_id": reward["id"]})
    assert redeemed.status_code == 201
    body = redeemed.json()
    assert body["points_spent"] == 100 and body["member"]["points_balance"] == 50
    assert body["code"].startswith("LS-")
    short = alice_api.post("members/cust/redemptions", {"reward_id": reward["id"]})
    assert_problem(short, 409)

    rid = body["redemption_id"]
    used = alice_api.post(f"redemptions/{rid}/use", {"order_id": "o-9"})
    assert used.json()["status"] == "used"
    assert alice_api.post(f"redemptions/{rid}/use").json()["status"] == "used"  # harmless twice
    cancelled = alice_api.post(f"redemptions/{rid}/cancel", {"reason": "Order refunded"})
    assert cancelled.json()["status"] == "cancelled"
    alice_api.post(f"redemptions/{rid}/cancel")  # twice returns the points once
    assert alice_api.get("members/cust").json()["points_balance"] == 150
    assert_problem(alice_api.post(f"redemptions/{rid}/use"), 409)
    history = alice_api.get("members/cust/redemptions").json()["results"]
    assert [r["code"] for r in history] == [body["code"]]


def test_redeeming_a_missing_or_retired_reward(alice_api):
    earn(alice_api, 500)
    assert_problem(alice_api.post("members/cust/redemptions", {"reward_id": 999999}), 404)
    assert_problem(alice_api.post("members/cust/redemptions", {}), 400, "reward_id")
    reward = alice_api.post(
        "rewards", {"name": "Old", "kind": "custom", "points_cost": 10, "value": "x"}
    ).json()
    alice_api.patch(f"rewards/{reward['id']}", {"active": False})
    assert_problem(alice_api.post("members/cust/redemptions", {"reward_id": reward["id"]}), 422)


def test_tiers_upgrade_at_once_and_show_the_next(alice_api):
    silver = alice_api.post(
        "tiers",
        {"name": "Silver", "threshold": 100, "basis": "points_earned", "period": "calendar_year"},
    )
    assert silver.status_code == 201
    alice_api.post(
        "tiers",
        {
            "name": "Gold",
            "threshold": 500,
            "basis": "points_earned",
            "period": "calendar_year",
            "earn_multiplier": "1.5",
        },
    )
    body = alice_api.post(
        "orders", {"order_id": "o", "member": "m", "subtotal": "120.00", "currency": "USD"}
    ).json()
    member = body["member"]
    assert member["tier"]["name"] == "Silver"
    assert member["next_tier"] == {
        "id": member["next_tier"]["id"],
        "name": "Gold",
        "points_needed": 380,
        "spend_needed": None,
    }
    program = alice_api.get("program").json()
    assert [t["name"] for t in program["tiers"]] == ["Silver", "Gold"]


def test_tiers_share_one_basis_and_period(alice_api):
    alice_api.post(
        "tiers",
        {"name": "Silver", "threshold": 100, "basis": "points_earned", "period": "calendar_year"},
    )
    mixed = alice_api.post(
        "tiers", {"name": "Gold", "threshold": 500, "basis": "spend", "period": "calendar_year"}
    )
    assert_problem(mixed, 422, "basis")
    same = alice_api.post(
        "tiers",
        {"name": "Silver", "threshold": 200, "basis": "points_earned", "period": "calendar_year"},
    )
    assert_problem(same, 409)
    assert_problem(
        alice_api.post(
            "tiers", {"name": "X", "threshold": 1, "basis": "points", "period": "calendar_year"}
        ),
        400,
        "basis",
    )
