"""A Hypothesis state machine over the ledger: earn, redeem, refund, adjust, cancel,
and time passing (pending points maturing, lots expiring, tier reviews).

After every step: balance = sum of entries = sum of matured lot remainders; pending = sum of
pending lot remainders; no lot below zero; and the tier equals the rule applied to the
history, computed here independently of the engine (see programs.services.tiers).
"""

import itertools
import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member, PointsEntry, PointsLot
from programs.services import members, orders, program, rewards, sweeps
from programs.services.ledger import InsufficientPoints

ZONE = zoneinfo.ZoneInfo("America/New_York")
TIERS = [("Silver", Decimal(100), Decimal(1)), ("Gold", Decimal(300), Decimal(2))]
serial = itertools.count()


def year_start(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=ZONE)


class LedgerMachine(RuleBasedStateMachine):
    tenant = None
    reward_costs = ()

    def __init__(self):
        super().__init__()
        self.scope = tenant_scope(self.tenant)
        self.scope.__enter__()
        self.now = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
        self.external_id = f"prop-{next(serial)}"
        members.member_upsert(tenant=self.tenant, external_id=self.external_id, now=self.now)
        self.orders = []  # [order, subtotal, awarded, refunded, target_reversed, placed_at]
        self.redemptions = []
        self.tier = None  # the oracle's tier name
        self.review_at = None

    def teardown(self):
        self.scope.__exit__(None, None, None)

    @property
    def member(self) -> Member:
        return Member.objects.select_related("tier").get(external_id=self.external_id)

    # --- the oracle ------------------------------------------------------------------------
    def value(self, start, end) -> Decimal:
        return Decimal(
            sum(
                awarded - reversed_
                for _, _, awarded, _, reversed_, placed in self.orders
                if start <= placed <= end
            )
        )

    @staticmethod
    def tier_for(value):
        reached = [name for name, threshold, _ in TIERS if threshold <= value]
        return reached[-1] if reached else None

    @staticmethod
    def rank(name):
        return -1 if name is None else [t[0] for t in TIERS].index(name)

    def after_activity(self):
        this_year = year_start(self.now.astimezone(ZONE).year)
        target = self.tier_for(self.value(this_year, self.now))
        if self.rank(target) > self.rank(self.tier):
            self.tier = target
            self.review_at = year_start(this_year.year + 1)

    def after_time(self):
        if self.review_at is None or self.review_at > self.now:
            return
        this_year = year_start(self.now.astimezone(ZONE).year)
        last_year = year_start(this_year.year - 1)
        value = max(self.value(last_year, this_year), self.value(this_year, self.now))
        self.tier = self.tier_for(value)
        self.review_at = year_start(this_year.year + 1) if self.tier else None

    # --- steps -----------------------------------------------------------------------------
    @rule(cents=st.integers(0, 40000))
    def earn(self, cents):
        subtotal = Decimal(cents) / 100
        multiplier = dict((n, m) for n, _, m in TIERS).get(self.tier, Decimal(1))
        expected = int((subtotal * multiplier).to_integral_value(rounding=ROUND_FLOOR))
        recorded = orders.order_record(
            tenant=self.tenant,
            order_id=f"{self.external_id}-o{len(self.orders)}",
            member_external_id=self.external_id,
            subtotal=subtotal,
            currency="USD",
            now=self.now,
        )
        assert recorded.order.points_awarded == expected
        self.orders.append([recorded.order, subtotal, expected, Decimal(0), 0, self.now])
        self.after_activity()

    @precondition(lambda self: self.orders)
    @rule(
        i=st.integers(0, 100), share=st.sampled_from([Decimal("0.1"), Decimal("0.5"), Decimal(1)])
    )
    def refund(self, i, share):
        row = self.orders[i % len(self.orders)]
        order, subtotal, awarded, refunded, _, _ = row
        amount = ((subtotal - refunded) * share).quantize(Decimal("0.01"))
        if amount <= 0:
            return
        orders.refund_record(
            order=order, refund_id=f"{order.order_id}-r{next(serial)}", amount=amount, now=self.now
        )
        row[3] = refunded + amount
        share_points = Decimal(awarded) * row[3] / subtotal
        row[4] = int(share_points.to_integral_value(rounding=ROUND_HALF_UP))

    @rule(cost=st.integers(0, 2))
    def redeem(self, cost):
        reward = self.reward_costs[cost]
        balance = self.member.points_balance
        try:
            self.redemptions.append(
                rewards.redemption_create(member=self.member, reward=reward, now=self.now)
            )
            assert balance >= reward.points_cost
        except InsufficientPoints:
            assert balance < reward.points_cost

    @precondition(lambda self: self.redemptions)
    @rule(i=st.integers(0, 100))
    def cancel(self, i):
        redemption = self.redemptions[i % len(self.redemptions)]
        rewards.redemption_cancel(redemption=redemption, now=self.now)

    @rule(points=st.integers(-80, 80).filter(bool))
    def adjust(self, points):
        balance = self.member.points_balance
        try:
            members.points_adjust(member=self.member, points=points, reason="prop", now=self.now)
            assert balance + points >= 0
        except InsufficientPoints:
            assert balance + points < 0

    @rule(hours=st.sampled_from([1, 20, 24 * 3, 24 * 8, 24 * 31, 24 * 200, 24 * 400]))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)
        sweeps.program_sweep(tenant=self.tenant, now=self.now)
        self.after_time()

    # --- what must always hold ------------------------------------------------------------
    @invariant()
    def ledger_adds_up(self):
        member = self.member
        entries = PointsEntry.objects.filter(member=member)
        lots = PointsLot.objects.filter(member=member)
        total = entries.aggregate(s=Sum("points"))["s"] or 0
        matured = lots.filter(matured=True).aggregate(s=Sum("remaining"))["s"] or 0
        pending = lots.filter(matured=False).aggregate(s=Sum("remaining"))["s"] or 0
        assert member.points_balance == total == matured >= 0
        assert member.points_pending == pending >= 0
        assert not lots.filter(remaining__lt=0).exists()
        last = entries.order_by("-id").first()
        assert last is None or last.balance_after == member.points_balance

    @invariant()
    def tier_follows_the_rule(self):
        member = self.member
        assert (member.tier.name if member.tier else None) == self.tier


@pytest.mark.django_db
def test_ledger_state_machine(alice_brand):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        prog = program.program_get(tenant)
        program.program_update(program=prog, expiry_policy="lot", expiry_days=30, pending_days=5)
        for name, threshold, multiplier in TIERS:
            program.tier_create(
                tenant=tenant,
                name=name,
                threshold=threshold,
                basis="points_earned",
                period="calendar_year",
                earn_multiplier=multiplier,
            )
        costs = [
            program.reward_create(
                tenant=tenant, name=f"R{c}", kind="custom", points_cost=c, value="x"
            )
            for c in (10, 75, 250)
        ]
    LedgerMachine.tenant = tenant
    LedgerMachine.reward_costs = costs
    machine = LedgerMachine.TestCase
    machine.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    machine().runTest()
