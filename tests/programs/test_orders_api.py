"""POST /api/v1/orders and /orders/{order_id}/refunds: points once, refunds in proportion."""

from datetime import timedelta

import pytest
from django.utils import timezone

from .conftest import assert_problem


def order(api, order_id="o-1", member="cust", subtotal="100.00", **extra):
    body = {"order_id": order_id, "member": member, "subtotal": subtotal, "currency": "USD"}
    return api.post("orders", body | extra)


def test_an_order_for_an_unknown_member_enrolls_and_awards(alice_api):
    response = order(alice_api, subtotal="49.90")
    assert response.status_code == 201
    body = response.json()
    assert body["order_id"] == "o-1"
    assert body["points_awarded"] == 49  # 1 point per dollar, rounded down by default
    member = body["member"]
    assert member["external_id"] == "cust"
    assert member["points_balance"] == 49
    assert member["lifetime_spend"] == "49.90"
    assert member["orders_count"] == 1
    assert member["last_order_at"] is not None


def test_the_same_order_again_replays_the_first_body(alice_api):
    first = order(alice_api)
    again = order(alice_api, subtotal="999.00")  # even with a different body
    assert again.status_code == 200
    assert again.json() == first.json()
    assert alice_api.get("members/cust").json()["points_balance"] == 100


def test_refunds_claw_back_in_proportion_and_replay(alice_api):
    order(alice_api, subtotal="80.00")
    half = alice_api.post("orders/o-1/refunds", {"refund_id": "r-1", "amount": "40.00"})
    assert half.status_code == 201
    assert half.json()["points_reversed"] == 40
    assert half.json()["member"]["points_balance"] == 40
    replay = alice_api.post("orders/o-1/refunds", {"refund_id": "r-1", "amount": "40.00"})
    assert replay.status_code == 200 and replay.json() == half.json()
    too_much = alice_api.post("orders/o-1/refunds", {"refund_id": "r-2", "amount": "40.01"})
    assert_problem(too_much, 422, "amount")
    rest = alice_api.post("orders/o-1/refunds", {"refund_id": "r-3", "amount": "40.00"})
    assert rest.json()["points_reversed"] == 40
    assert rest.json()["member"]["points_balance"] == 0
    assert rest.json()["member"]["lifetime_spend"] == "0.00"


def test_a_refund_never_takes_the_balance_below_zero_and_records_the_rest(alice_api, alice_brand):
    order(alice_api, subtotal="50.00")
    alice_api.post(
        "rewards", {"name": "Mug", "kind": "free_product", "points_cost": 40, "value": "SKU-MUG"}
    )
    reward_id = alice_api.get("rewards").json()["results"][0]["id"]
    alice_api.post("members/cust/redemptions", {"reward_id": reward_id})
    refund = alice_api.post("orders/o-1/refunds", {"refund_id": "r-1", "amount": "50.00"})
    assert refund.json()["points_reversed"] == 10
    assert refund.json()["points_unrecovered"] == 40
    assert refund.json()["member"]["points_balance"] == 0
    assert refund.json()["member"]["lifetime_points"] == 0


def test_a_refund_id_of_another_order_is_refused(alice_api):
    order(alice_api, order_id="a")
    order(alice_api, order_id="b")
    alice_api.post("orders/a/refunds", {"refund_id": "r", "amount": "1.00"})
    assert_problem(
        alice_api.post("orders/b/refunds", {"refund_id": "r", "amount": "1.00"}), 422, "refund_id"
    )


def test_pending_points_wait_for_the_return_window(alice_api):
    alice_api.patch("program", {"pending_days": 14})
    body = order(alice_api, subtotal="30.00").json()
    assert body["points_awarded"] == 30 and body["points_pending"] is True
    assert body["member"]["points_balance"] == 0
    assert body["member"]["points_pending"] == 30
    # A refund inside the window takes from the pending points, not the balance.
    refund = alice_api.post("orders/o-1/refunds", {"refund_id": "r", "amount": "10.00"}).json()
    assert refund["points_reversed"] == 10
    assert refund["member"]["points_pending"] == 20


def test_earn_rate_rounding_tier_and_event_multipliers(alice_api):
    alice_api.patch("program", {"earn_rate": "2.5", "rounding": "nearest"})
    assert order(alice_api, order_id="x", subtotal="10.10").json()["points_awarded"] == 25
    now = timezone.now()
    alice_api.post(
        "multiplier-events",
        {
            "name": "Double points weekend",
            "multiplier": "2",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert order(alice_api, order_id="y", subtotal="10.00").json()["points_awarded"] == 50
    before = (now - timedelta(days=2)).isoformat()
    assert (
        order(alice_api, order_id="z", subtotal="10.00", placed_at=before).json()["points_awarded"]
        == 25
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"member": "m", "subtotal": "1.00", "currency": "USD"}, "order_id"),
        ({"order_id": "o", "subtotal": "1.00", "currency": "USD"}, "member"),
        ({"order_id": "o", "member": "m", "currency": "USD"}, "subtotal"),
        ({"order_id": "o", "member": "m", "subtotal": "-1.00", "currency": "USD"}, "subtotal"),
        ({"order_id": "o", "member": "m", "subtotal": "1.001", "currency": "USD"}, "subtotal"),
        ({"order_id": "o", "member": "m", "subtotal": "NaN", "currency": "USD"}, "subtotal"),
        ({"order_id": "o", "member": "m", "subtotal": "1e30", "currency": "USD"}, "subtotal"),
        ({"order_id": "o", "member": "m", "subtotal": "1.00", "currency": "usd"}, "currency"),
        ({"order_id": "o", "member": "m", "subtotal": "1.00"}, "currency"),
        (
            {
                "order_id": "o",
                "member": "m",
                "subtotal": "1.00",
                "currency": "USD",
                "placed_at": "yesterday",
            },
            "placed_at",
        ),
    ],
)
def test_bad_orders_are_400_problems(alice_api, body, field):
    assert_problem(alice_api.post("orders", body), 400, field)


def test_an_order_in_another_currency_is_422(alice_api):
    assert_problem(order(alice_api, currency="EUR"), 422, "currency")
    assert_problem(alice_api.get("members/cust"), 404)  # nothing was written


def test_refund_input_errors(alice_api):
    order(alice_api)
    assert_problem(alice_api.post("orders/nope/refunds", {"refund_id": "r", "amount": "1"}), 404)
    assert_problem(alice_api.post("orders/o-1/refunds", {"amount": "1"}), 400, "refund_id")
    assert_problem(
        alice_api.post("orders/o-1/refunds", {"refund_id": "r", "amount": "0"}), 400, "amount"
    )


def test_the_order_answer_shows_its_own_lot_expiring(alice_api):
    alice_api.patch("program", {"expiry_policy": "lot", "expiry_days": 30})
    first = order(alice_api, order_id="a", subtotal="10.00").json()["member"]
    assert [row["points"] for row in first["points_expiring"]] == [10]
    second = order(alice_api, order_id="b", subtotal="5.00").json()["member"]
    assert sum(row["points"] for row in second["points_expiring"]) == 15
    assert second == alice_api.get("members/cust").json()  # the same as a fresh read


def test_an_order_too_large_for_a_members_account_is_refused_not_a_server_error(alice_api):
    response = alice_api.post(
        "orders",
        {"order_id": "huge", "member": "m1", "subtotal": "999999999999.99", "currency": "USD"},
    )
    assert_problem(response, 422, "subtotal")
    assert alice_api.get("members/m1").status_code == 404  # nothing was written
    ok = alice_api.post(
        "orders", {"order_id": "fine", "member": "m1", "subtotal": "10.00", "currency": "USD"}
    )
    assert ok.status_code == 201
