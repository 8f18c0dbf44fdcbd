"""The demo brand's loyalty program: tiers, rewards, and members with a believable past.

Everything goes through the real services with `now` set to the moment each thing happened,
so ledgers, lots, expiry, tiers and outbox events look exactly like a real history.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from loyaltysms.models import Tenant
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import tenant_scope
from programs import selectors
from programs.models import Member
from programs.services import members, orders, program, rewards, sweeps

# Through the real services, one member with its history costs ~25 ms to seed; 1,200 keep
# `make run`'s first start quick.
MEMBERS = 1200
HISTORY_DAYS = 540
FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Finn",
    "Grace",
    "Hugo",
    "Isla",
    "Jack",
    "Kira",
    "Leo",
    "Maya",
    "Noah",
    "Olivia",
    "Priya",
    "Quinn",
    "Ravi",
    "Sofia",
    "Theo",
    "Uma",
    "Victor",
    "Wren",
    "Xavier",
    "Yara",
    "Zane",
]
LAST = [
    "Adams",
    "Brown",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Johnson",
    "Kim",
    "Lopez",
    "Miller",
    "Nguyen",
    "Okafor",
    "Patel",
    "Rossi",
    "Smith",
    "Tanaka",
    "Walker",
]
AREA_CODES = ["212", "312", "415", "617", "646", "718", "773", "206", "303", "512"]


def seed(tenant: Tenant, *, now: datetime) -> dict:
    rng = random.Random(42)  # noqa: S311 - demo data, the same on every machine
    with tenant_scope(tenant):
        _program(tenant, now)
        rewards_by_cost = _rewards(tenant)
        counts = _history(tenant, now, rng, rewards_by_cost)
    return counts


def _program(tenant: Tenant, now: datetime) -> None:
    program.program_update(
        program=program.program_get(tenant),
        points_name="beans",
        enrollment_bonus=50,
        birthday_bonus=100,
        sms_bonus=25,
        expiry_policy="lot",
        expiry_days=365,
    )
    for name, threshold, multiplier, perks in [
        ("Silver", 200, "1.00", "Free shipping on every order"),
        ("Gold", 600, "1.25", "1.25× beans, early access to new roasts"),
        ("Platinum", 1200, "1.50", "1.5× beans, a free bag every quarter"),
    ]:
        program.tier_create(
            tenant=tenant,
            name=name,
            threshold=Decimal(threshold),
            basis="points_earned",
            period="calendar_year",
            earn_multiplier=Decimal(multiplier),
            perks=perks,
        )
    start = (now - timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
    program.multiplier_event_create(
        tenant=tenant,
        name="Double beans weekend",
        multiplier=Decimal(2),
        starts_at=start,
        ends_at=start + timedelta(days=2),
    )


def _rewards(tenant: Tenant) -> list:
    made = [
        program.reward_create(
            tenant=tenant, name="Free shipping", kind="free_shipping", points_cost=300
        ),
        program.reward_create(
            tenant=tenant, name="$5 off", kind="fixed_amount", points_cost=500, value="5.00"
        ),
        program.reward_create(
            tenant=tenant,
            name="Free bag of beans",
            kind="free_product",
            points_cost=900,
            value="SKU-BEANS-250G",
        ),
        program.reward_create(
            tenant=tenant, name="15% off", kind="percent_off", points_cost=1200, value="15"
        ),
    ]
    return sorted(made, key=lambda reward: reward.points_cost)


def _history(tenant: Tenant, now: datetime, rng: random.Random, catalog: list) -> dict:
    """Replay a generated timeline of enrollments, orders, refunds and redemptions."""
    begin = now - timedelta(days=HISTORY_DAYS)
    timeline: list[tuple[datetime, int, str, dict]] = []
    serial = 0

    def at(when: datetime, kind: str, **data) -> None:
        nonlocal serial
        serial += 1
        heapq.heappush(timeline, (when, serial, kind, data))

    for n in range(MEMBERS):
        joined = begin + timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        profile = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}{n}@example.com".lower(),
            "phone": f"+1{rng.choice(AREA_CODES)}555{n % 10000:04d}"
            if rng.random() < 0.8
            else None,
            "birthday": members.Birthday(
                month=rng.randint(1, 12),
                day=rng.randint(1, 28),
                year=rng.choice([None, rng.randint(1960, 2004)]),
            ),
        }
        at(joined, "enroll", external_id=f"cust-{n:05d}", profile=profile)
        # Most customers buy once or twice, some never, and a few regulars all the time.
        regular = rng.random() < 0.06
        visits = 40 if regular else min(int(rng.paretovariate(1.4)), 12)
        visits = 0 if rng.random() < 0.15 else visits
        when = joined
        for v in range(visits):
            when += timedelta(days=rng.expovariate(1 / (9 if regular else 45)))
            if when >= now:
                break
            subtotal = Decimal(rng.randint(1200, 18000)) / 100
            at(
                when,
                "order",
                external_id=f"cust-{n:05d}",
                order_id=f"D{n:05d}-{v}",
                subtotal=subtotal,
            )
            if rng.random() < 0.05:
                at(
                    when + timedelta(days=rng.randint(2, 20)),
                    "refund",
                    order_id=f"D{n:05d}-{v}",
                    share=rng.choice([Decimal("0.5"), Decimal(1)]),
                )
            if rng.random() < 0.15:
                at(when + timedelta(minutes=5), "redeem", external_id=f"cust-{n:05d}")
    for month in range(HISTORY_DAYS // 30 + 1):  # time-driven work, as beat would run it
        at(begin + timedelta(days=30 * month), "sweep")

    counts = {"members": 0, "orders": 0, "refunds": 0, "redemptions": 0}
    while timeline:
        when, _, kind, data = heapq.heappop(timeline)
        if when > now:
            continue
        if kind == "enroll":
            members.member_upsert(
                tenant=tenant,
                external_id=data["external_id"],
                now=when,
                **{k: v for k, v in data["profile"].items() if v is not None},
            )
            counts["members"] += 1
        elif kind == "order":
            orders.order_record(
                tenant=tenant,
                order_id=data["order_id"],
                member_external_id=data["external_id"],
                subtotal=data["subtotal"],
                currency=tenant.currency,
                now=when,
            )
            counts["orders"] += 1
        elif kind == "refund":
            order = selectors.get_order(tenant, data["order_id"])
            amount = (order.subtotal * data["share"]).quantize(Decimal("0.01"))
            orders.refund_record(
                order=order, refund_id=f"R-{data['order_id']}", amount=amount, now=when
            )
            counts["refunds"] += 1
        elif kind == "redeem":
            member = Member.objects.get(external_id=data["external_id"])
            affordable = [r for r in catalog if r.points_cost <= member.points_balance]
            if affordable:
                try:
                    rewards.redemption_create(member=member, reward=affordable[-1], now=when)
                    counts["redemptions"] += 1
                except ProblemError:
                    pass
        else:
            sweeps.program_sweep(tenant=tenant, now=when)
            # The tables grow from nothing here: fresh planner statistics keep the per-member
            # lookups on their indexes (autovacuum would, later).
            with connection.cursor() as cursor:
                cursor.execute(
                    "ANALYZE programs_member, programs_order, programs_pointsentry, "
                    "programs_pointslot"
                )
    sweeps.program_sweep(tenant=tenant, now=now)
    return counts
