from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hooks.services.endpoints import endpoint_create
from loyaltysms.tenancy.context import tenant_scope
from programs.services.orders import order_record

from .receiver import Receiver

ALL_EVENTS = [
    "points_earned",
    "tier_changed",
    "sms_subscribed",
    "sms_unsubscribed",
    "reward_redeemed",
]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


class Clock:
    """The time the services and the sender are told: moves only when a test moves it."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    # A little ahead of the wall clock: every row the tests write is "now" or later.
    return Clock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1))


def make_endpoint(brand, url, events=None):
    return endpoint_create(
        tenant=brand.tenant, url=url, events=events or ALL_EVENTS, actor=brand.owner
    )


def order(brand, member: str, n: int, now, subtotal="10"):
    with tenant_scope(brand.tenant):
        return order_record(
            tenant=brand.tenant,
            order_id=f"{member}-{n}",
            member_external_id=member,
            subtotal=Decimal(subtotal),
            currency="USD",
            now=now,
        )


@pytest.fixture(autouse=True)
def private_urls_allowed(settings):
    """The receivers here listen on 127.0.0.1, which production refuses (test_ssrf.py)."""
    settings.HOOKS_ALLOW_PRIVATE_URLS = True
