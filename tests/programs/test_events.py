"""The outbox: each change writes its events once, in the same transaction."""

from collections import Counter

from loyaltysms.tenancy.context import tenant_scope
from programs.models import LoyaltyEvent


def kinds(brand) -> Counter:
    with tenant_scope(brand.tenant):
        return Counter(LoyaltyEvent.objects.values_list("kind", flat=True))


def test_each_change_writes_its_events_exactly_once(alice_api, alice_brand):
    alice_api.patch("program", {"enrollment_bonus": 25})
    alice_api.post(
        "tiers", {"name": "Silver", "threshold": 50, "basis": "points_earned", "period": "lifetime"}
    )
    reward = alice_api.post(
        "rewards", {"name": "Tote", "kind": "custom", "points_cost": 60, "value": "tote"}
    ).json()
    order = {"order_id": "o-1", "member": "ev", "subtotal": "100.00", "currency": "USD"}
    alice_api.post("orders", order)
    alice_api.post("orders", order)  # a retry: no new events
    alice_api.post("members/ev/redemptions", {"reward_id": reward["id"]})
    alice_api.post("orders/o-1/refunds", {"refund_id": "r-1", "amount": "10.00"})
    alice_api.post("orders/o-1/refunds", {"refund_id": "r-1", "amount": "10.00"})
    assert kinds(alice_brand) == Counter(
        {
            "member_enrolled": 1,
            "points_earned": 2,  # the welcome bonus, the order
            "order_placed": 1,
            "tier_changed": 1,
            "points_redeemed": 1,
            "reward_redeemed": 1,
            "order_refunded": 1,
        }
    )


def test_a_failed_change_writes_no_event(alice_api, alice_brand):
    alice_api.post("members", {"external_id": "poor"})
    before = kinds(alice_brand)
    alice_api.post("members/poor/adjustments", {"points": -1, "reason": "x"})
    assert kinds(alice_brand) == before
