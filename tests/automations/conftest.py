"""A brand with subscribers (members with names, balances and tiers; numbers that aren't
members; unsubscribed and pending numbers; staff to exclude), built through the real
services, and an outsider brand with look-alike people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from automations.models import CampaignRecipient
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import OutboundMessage, Sender, ShortLink, Subscriber
from messaging.services.setup import sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in, subscriber_opt_out
from programs.services.members import member_upsert
from programs.services.orders import order_record
from programs.services.program import tier_create
from segments.models import Segment
from segments.services import segment_create

# 12:00 in New York, 09:00 in Los Angeles: inside every US window.
NOON = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
EVERYONE = {"field": "sms_status", "op": "is", "value": "subscribed"}
STAFF = {"field": "tags", "op": "has", "value": "staff"}


@dataclass
class Audience:
    tenant: Tenant
    sender: Sender
    everyone: Segment
    staff: Segment
    subscribed: set[int]  # subscriber ids a campaign to `everyone` minus `staff` texts
    unsubscribed: set[int]
    pending: set[int]
    staff_ids: set[int]
    first_names: dict[int, str]  # subscriber id → first name ("" for non-members)


def build_audience(tenant: Tenant, *, size: int = 24, prefix: str = "212") -> Audience:
    """`size` numbers in New York: most subscribed members (names, balances from an order,
    the Silver tier for the bigger spenders), a few subscribed non-members, two staff,
    one unsubscribed, one pending."""
    base = NOON - timedelta(days=30)
    sender = sender_default(tenant)
    sender.mps = 1000  # the sandbox takes them as fast as we pace them
    sender.save(update_fields=["mps"])
    with tenant_scope(tenant):
        tier_create(
            tenant=tenant,
            name="Silver",
            threshold=Decimal(100),
            basis="points_earned",
            period="lifetime",
        )
    subscribed, unsubscribed, pending, staff, names = set(), set(), set(), set(), {}
    for n in range(size):
        phone = f"+1{prefix}555{n:04d}"
        member = None
        first = ""
        if n % 6 != 5:  # every sixth number isn't a member
            first = f"Pat{n}"
            tags = ["staff"] if n in (3, 4) else []
            member = member_upsert(
                tenant=tenant,
                external_id=f"m{n}",
                now=base,
                first_name=first,
                last_name="Lee",
                tags=tags,
            ).member
            order_record(
                tenant=tenant,
                order_id=f"o{n}",
                member_external_id=f"m{n}",
                subtotal=Decimal(40 * n + 10),
                currency="USD",
                now=base,
                placed_at=base,
            )
        subscriber = subscriber_opt_in(
            tenant=tenant,
            phone=phone,
            evidence=Evidence(source="import"),
            now=base,
            double_opt_in=(n == size - 1),
            member=member,
            send_confirmation=False,
        )
        names[subscriber.pk] = first
        if n == size - 1:
            pending.add(subscriber.pk)
        elif n == size - 2:
            subscriber_opt_out(
                subscriber=subscriber, evidence=Evidence(source="import"), now=base, confirm=False
            )
            unsubscribed.add(subscriber.pk)
        elif n in (3, 4):
            staff.add(subscriber.pk)
        else:
            subscribed.add(subscriber.pk)
    everyone = segment_create(tenant=tenant, name="Everyone", rules=EVERYONE, now=base)
    staff_segment = segment_create(tenant=tenant, name="Staff", rules=STAFF, now=base)
    return Audience(
        tenant, sender, everyone, staff_segment, subscribed, unsubscribed, pending, staff, names
    )


@pytest.fixture
def audience(alice_brand, charlie_brand) -> Audience:
    build_audience(charlie_brand.tenant, size=8)  # the outsider: same kind of people
    return build_audience(alice_brand.tenant)


def texts_of(tenant: Tenant, campaign) -> list[OutboundMessage]:
    with tenant_scope(tenant):
        return list(OutboundMessage.objects.filter(source="campaign", source_ref=str(campaign.pk)))


def recipients_of(tenant: Tenant, campaign) -> list[CampaignRecipient]:
    with tenant_scope(tenant):
        return list(CampaignRecipient.objects.filter(campaign=campaign).order_by("id"))


def click(tenant: Tenant, subscriber_id: int, campaign) -> None:
    """The recipient taps the tracked link of their campaign text on their phone."""
    with tenant_scope(tenant):
        link = ShortLink.objects.get(
            subscriber_id=subscriber_id,
            message_dedupe_key=f"campaign:{campaign.pk}:{subscriber_id}",
        )
    response = Client().get(f"/l/{link.code}", headers={"User-Agent": BROWSER})
    assert response.status_code == 302


def subscriber(tenant: Tenant, subscriber_id: int) -> Subscriber:
    with tenant_scope(tenant):
        return Subscriber.objects.get(pk=subscriber_id)


# --- flows: a fake clock, a brand in New York, people joining, a tap on a link ---------------

NEW_YORK = ZoneInfo("America/New_York")


class Clock:
    """The time as the test sets it; pass the instance where a service takes `now=` as a
    callable."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)

    def to_local(self, day: date, hour: int, minute: int = 0, zone: ZoneInfo = NEW_YORK) -> None:
        """On to that local moment (never back)."""
        target = datetime.combine(day, time(hour, minute), tzinfo=zone)
        assert target >= self.at, f"the clock is at {self.at}, past {target}"
        self.at = target.astimezone(UTC)


def in_new_york(tenant: Tenant) -> Tenant:
    """The brand in New York, its sandbox sender as fast as we pace it."""
    tenant.timezone = "America/New_York"
    tenant.save(update_fields=["timezone"])
    sender = sender_default(tenant)
    sender.mps = 100
    sender.save(update_fields=["mps"])
    return tenant


def subscribe_number(tenant: Tenant, n: int, at: datetime, *, member=None) -> Subscriber:
    """+1 212 555 <n>, subscribed at checkout (single opt-in, no confirmation text)."""
    return subscriber_opt_in(
        tenant=tenant,
        phone=f"+1212555{n:04d}",
        evidence=Evidence(source="checkout"),
        now=at,
        member=member,
        double_opt_in=False,
        send_confirmation=False,
    )


def join(tenant: Tenant, n: int, at: datetime, *, subscribe: bool = True, **profile):
    """Member m<n> "Pat<n> Lee" enrolls (an outbox event) and, unless told not to,
    subscribes their number (another)."""
    profile.setdefault("last_name", "Lee")
    member = member_upsert(
        tenant=tenant, external_id=f"m{n}", now=at, first_name=f"Pat{n}", **profile
    ).member
    if subscribe:
        subscribe_number(tenant, n, at, member=member)
    return member


def tap_link(tenant: Tenant, text: OutboundMessage) -> None:
    """The recipient taps the tracked link of the text on their phone."""
    with tenant_scope(tenant):
        link = ShortLink.objects.get(message_dedupe_key=text.dedupe_key)
    assert Client().get(f"/l/{link.code}", headers={"User-Agent": BROWSER}).status_code == 302


def buy(tenant: Tenant, member, order_id: str, at: datetime, amount: int = 20) -> None:
    """The member orders (points, an order_placed event) at `at`."""
    order_record(
        tenant=tenant,
        order_id=order_id,
        member_external_id=member.external_id,
        subtotal=Decimal(amount),
        currency="USD",
        now=at,
        placed_at=at,
    )
