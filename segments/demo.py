"""The demo brand's segments: the questions marketers ask first, saved through the service."""

from __future__ import annotations

from datetime import datetime

from loyaltysms.models import Tenant
from programs.services.program import tier_ladder_get
from segments.services import segment_create

SUBSCRIBED = {"field": "sms_status", "op": "is", "value": "subscribed"}


def demo_segments(tenant: Tenant) -> list[tuple[str, dict]]:
    """(name, rules) of each demo segment; the VIP one needs a ladder of two tiers or more."""
    found = [
        (
            "Members with a balance who never redeemed",
            {
                "all": [
                    {"field": "points_balance", "op": "gt", "value": 0},
                    {"field": "redeemed", "op": "never"},
                ]
            },
        ),
        (
            "Subscribers who aren't members yet",
            {"all": [{"field": "member", "op": "is", "value": False}, SUBSCRIBED]},
        ),
        (
            "No order in 90 days",
            {"all": [{"field": "days_since_last_order", "op": "gte", "value": 90}, SUBSCRIBED]},
        ),
        (
            "Birthdays in the next 14 days",
            {"all": [{"field": "birthday", "op": "within_next_days", "value": 14}, SUBSCRIBED]},
        ),
    ]
    ladder = tier_ladder_get(tenant)
    if len(ladder) >= 2:
        vip = ladder[-2]  # the second tier from the top, and the ones above it
        found.insert(
            0,
            (
                "VIPs with points expiring this month",
                {
                    "all": [
                        {"field": "tier", "op": "at_least", "value": vip.pk},
                        {"field": "points_expiring", "op": "gte", "value": 1, "days": 30},
                        SUBSCRIBED,
                        {"not": {"field": "redeemed", "op": "within_days", "value": 60}},
                    ]
                },
            ),
        )
    return found


def seed(tenant: Tenant, *, now: datetime) -> dict:
    made = [
        segment_create(tenant=tenant, name=name, rules=rules, now=now)
        for name, rules in demo_segments(tenant)
    ]
    return {"segments": len(made)}
