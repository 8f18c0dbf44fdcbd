"""A small brand built through the real services, and an independent evaluation of rule trees
over it in Python (the oracle the SQL is compared with).

The world is built once per module (its rows are committed, then flushed at the end): members
with orders at different times (so lots expire at different times), redemptions (one
cancelled), tiers, birthdays, tags, zones; numbers subscribed, pending, unsubscribed, texting
in without opting in, one member with two numbers, subscribers who are not members; texts
sent and delivered, replies, a clicked link. An outsider brand has look-alike people that no
segment of alice's may ever include.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import (
    ConsentSource,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    ShortLink,
    Subscriber,
)
from messaging.services.inbound import inbound_receive
from messaging.services.outbound import message_create
from messaging.services.setup import sender_default
from messaging.services.status import status_receive
from messaging.services.subscribers import Evidence, subscriber_opt_in, subscriber_opt_out
from programs.models import Member, PointsLot, Redemption, RedemptionStatus, Tier
from programs.services.members import Birthday, member_upsert
from programs.services.orders import order_record
from programs.services.program import program_get, program_update, reward_create, tier_create
from programs.services.rewards import redemption_cancel, redemption_create

from ..conftest import make_brand

DAY = timedelta(days=1)
_sids = itertools.count(1)
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"


@dataclass
class World:
    tenant: Tenant
    outsider: Tenant
    now: datetime  # every fact is before it
    tiers: dict[str, int]  # name → id
    outsider_tier: int
    data: dict = field(default_factory=dict)


# (external id, phone or None, birthday, tags, zone, orders as days ago with subtotals,
#  redemptions as days ago (negative: cancelled))
MEMBERS = [
    ("ann", "+12125550101", (1, 1, 1990), ["vip", "coffee"], "", [(3, 120), (40, 90)], [2]),
    ("ben", "+13125550102", (2, 29, 1992), ["coffee"], "America/Chicago", [(100, 40)], []),
    ("cat", "+14155550103", (12, 31, None), [], "", [(10, 400), (20, 30)], [-5, 15]),
    ("dan", None, (3, 1, 1985), ["tea"], "Europe/London", [], []),
    ("eve", "+16045550105", (2, 28, 2000), ["vip"], "", [(59, 200)], [58]),
    ("fay", "+12125550106", None, ["tea", "vip"], "America/New_York", [(0, 10)], []),
    ("gus", "+13125550107", (6, 15, 1970), [], "", [(200, 75), (95, 25)], [90]),
    ("hal", None, (7, 4, None), ["coffee", "tea"], "", [(1, 350)], [1]),
    ("ivy", "+14155550109", (1, 2, 1999), [], "", [], []),
    ("jon", "+12125550110", (11, 30, 1988), ["lapsed"], "", [(365, 60)], []),
    ("kim", "+13125550111", (3, 2, 1995), ["vip"], "", [(61, 500), (30, 50)], []),
    ("lee", "+14155550112", None, [], "", [(45, 5)], []),
]

# (phone, member external id or None, how: subscribed | pending | unsubscribed | texted,
#  source, zone)
SUBSCRIBERS = [
    ("+12125550101", "ann", "subscribed", ConsentSource.CHECKOUT, ""),
    ("+13125550102", "ben", "subscribed", ConsentSource.WEB_FORM, ""),
    ("+14155550103", "cat", "unsubscribed", ConsentSource.KEYWORD, ""),
    ("+16045550105", "eve", "subscribed", ConsentSource.IMPORT, ""),
    ("+12125550106", "fay", "pending", ConsentSource.WEB_FORM, ""),
    ("+13125550107", "gus", "subscribed", ConsentSource.LOYALTY_PAGE, "America/Denver"),
    ("+14155550109", "ivy", "texted", ConsentSource.KEYWORD, ""),
    ("+12125550110", "jon", "subscribed", ConsentSource.CHECKOUT, ""),
    ("+17185550120", "ann", "subscribed", ConsentSource.API, ""),  # ann's second number
    ("+14165550121", None, "subscribed", ConsentSource.KEYWORD, ""),  # Toronto, not a member
    ("+13055550122", None, "subscribed", ConsentSource.WEB_FORM, "America/New_York"),
    ("+12065550123", None, "unsubscribed", ConsentSource.IMPORT, ""),
    ("+15125550124", None, "pending", ConsentSource.WEB_FORM, ""),
    ("+16175550125", None, "texted", ConsentSource.KEYWORD, ""),
]


def _member_build(tenant: Tenant, row, base: datetime, reward) -> None:
    external_id, phone, birthday, tags, zone, orders, redemptions = row
    profile = {"tags": tags, "timezone": zone}
    if phone:
        profile["phone"] = phone
    if birthday:
        profile["birthday"] = Birthday(*birthday)
    first = max([days for days, _ in orders] + [400]) + 1
    member_upsert(tenant=tenant, external_id=external_id, now=base - first * DAY, **profile)
    for n, (days, subtotal) in enumerate(sorted(orders, reverse=True)):
        at = base - days * DAY - timedelta(hours=n)
        order_record(
            tenant=tenant,
            order_id=f"{external_id}-{n}",
            member_external_id=external_id,
            subtotal=Decimal(subtotal),
            currency="USD",
            now=at,
            placed_at=at,
        )
    for days in sorted(redemptions, key=abs, reverse=True):
        at = base - abs(days) * DAY + timedelta(hours=1)
        with tenant_scope(tenant):
            member = Member.objects.get(external_id=external_id)
        redemption = redemption_create(member=member, reward=reward, now=at)
        if days < 0:
            redemption_cancel(redemption=redemption, now=at + timedelta(hours=1))


def _subscribers_build(tenant: Tenant, base: datetime) -> None:
    sender = sender_default(tenant)
    for n, (phone, external_id, how, source, zone) in enumerate(SUBSCRIBERS):
        at = base - (30 + 7 * n) * DAY
        if how == "texted":  # texted in without opting in: a "none" subscriber, a reply
            inbound_receive(
                sender=sender,
                params={
                    "From": phone,
                    "To": sender.phone_number,
                    "Body": "what time do you open?",
                    "MessageSid": f"SM{next(_sids):032x}",
                },
                now=at,
            )
            continue
        with tenant_scope(tenant):
            member = Member.objects.get(external_id=external_id) if external_id else None
        subscriber = subscriber_opt_in(
            tenant=tenant,
            phone=phone,
            evidence=Evidence(source=source),
            now=at,
            double_opt_in=how == "pending",
            member=member,
            timezone=zone,
        )
        if how == "unsubscribed":
            subscriber_opt_out(
                subscriber=subscriber, evidence=Evidence(source=source), now=at + 3 * DAY
            )


def _messaging_build(tenant: Tenant, base: datetime) -> None:
    """Receipts for some of the confirmation texts, a marketing text with a link (clicked by
    one recipient), replies."""
    sender = sender_default(tenant)
    with tenant_scope(tenant):
        texts = list(OutboundMessage.objects.order_by("id"))
    for n, message in enumerate(texts):
        if n % 3 == 2:
            continue  # never went out
        status_receive(
            message=message,
            params={
                "MessageSid": f"SM{next(_sids):032x}",
                "MessageStatus": "delivered" if n % 2 else "sent",
            },
            now=base - (2 + 5 * n) * DAY,
        )
    with tenant_scope(tenant):
        subscribers = {s.e164: s for s in Subscriber.objects.all()}
    for phone in ("+12125550101", "+13125550107", "+14165550121"):
        message, _ = message_create(
            tenant=tenant,
            subscriber=subscribers[phone],
            template="Double points today: https://shop.test/sale",
            kind=MessageKind.MARKETING,
            source="campaign",
            dedupe_key=f"campaign:test:{phone}",
            now=base - 4 * DAY,
        )
        status_receive(
            message=message,
            params={"MessageSid": f"SM{next(_sids):032x}", "MessageStatus": "delivered"},
            now=base - 4 * DAY,
        )
    with tenant_scope(tenant):
        link = ShortLink.objects.get(subscriber=subscribers["+12125550101"])
    response = Client().get(f"/l/{link.code}", headers={"User-Agent": BROWSER})
    assert response.status_code == 302
    for phone, days in (("+13125550107", 12), ("+14165550121", 1), ("+12125550110", 70)):
        inbound_receive(
            sender=sender,
            params={
                "From": phone,
                "To": sender.phone_number,
                "Body": "Thanks! see you soon",
                "MessageSid": f"SM{next(_sids):032x}",
            },
            now=base - days * DAY,
        )


def world_build() -> World:
    alice = make_brand("seg-alice", "Alice's Bakery", "seg-alice@bakery.test").tenant
    charlie = make_brand("seg-charlie", "Charlie's Cafe", "seg-charlie@cafe.test").tenant
    base = timezone.now().replace(microsecond=0) - DAY
    tiers = {}
    for tenant in (alice, charlie):
        scope = tenant_scope(tenant)
        scope.__enter__()
        program_update(program=program_get(tenant), expiry_policy="lot", expiry_days=60)
        made = {
            name: tier_create(
                tenant=tenant,
                name=name,
                threshold=Decimal(threshold),
                basis="points_earned",
                period="lifetime",
            )
            for name, threshold in (("Silver", 100), ("Gold", 300), ("Platinum", 600))
        }
        reward = reward_create(
            tenant=tenant, name="Free shipping", kind="free_shipping", points_cost=20
        )
        for row in MEMBERS:
            _member_build(tenant, row, base, reward)
        _subscribers_build(tenant, base)
        if tenant == alice:
            tiers = {name: tier.pk for name, tier in made.items()}
        else:
            outsider_tier = made["Gold"].pk
        _messaging_build(tenant, base)
        scope.__exit__(None, None, None)
    return World(alice, charlie, timezone.now(), tiers, outsider_tier)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        built = world_build()
        built.data = snapshot(built.tenant)
        yield built
        call_command("flush", interactive=False, verbosity=0)


# --- the oracle -------------------------------------------------------------------------
def snapshot(tenant: Tenant) -> dict:
    """Everything the oracle reads, loaded with the ORM (no SQL of the compiler's)."""
    with tenant_scope(tenant):
        return {
            "members": list(Member.objects.all()),
            "tiers": {t.pk: t.threshold for t in Tier.objects.all()},
            "subscribers": list(Subscriber.objects.all()),
            "lots": list(PointsLot.objects.all()),
            "redemptions": list(Redemption.objects.all()),
            "links": list(ShortLink.objects.all()),
            "outbound": list(OutboundMessage.objects.all()),
            "inbound": list(InboundMessage.objects.all()),
        }


def pairs(data: dict) -> list[tuple[Member | None, Subscriber | None]]:
    """Each member with each of their numbers (or alone), and each subscriber who isn't one."""
    out = []
    for member in data["members"]:
        numbers = [s for s in data["subscribers"] if s.member_id == member.pk]
        out += [(member, s) for s in numbers] or [(member, None)]
    out += [(None, s) for s in data["subscribers"] if s.member_id is None]
    return out


def person_key(member, subscriber) -> tuple:
    return ("member", member.pk) if member is not None else ("subscriber", subscriber.pk)


def _compare(actual, op: str, value) -> bool:
    if op == "between":
        return value[0] <= actual <= value[1]
    return {
        "eq": actual == value,
        "gt": actual > value,
        "gte": actual >= value,
        "lt": actual < value,
        "lte": actual <= value,
    }[op]


def _choose(actual, op: str, value) -> bool:
    if op == "is":
        return actual == value
    if op == "is_not":
        return actual != value
    return actual in value


def _days(now: datetime, then: datetime) -> int:
    return (now - then) // DAY


def _activity(times: list[datetime], op: str, value, now: datetime) -> bool:
    if op == "ever":
        return bool(times)
    if op == "never":
        return not times
    return any(t >= now - value * DAY for t in times)


def _next_birthday_in(member: Member, today, days: int) -> bool:
    """Walk the calendar: the birthday's next celebration on or after today (29 February on
    28 February in other years) is at most `days` days away."""
    import calendar
    from datetime import date

    for year in (today.year, today.year + 1):
        month, day = member.birthday_month, member.birthday_day
        if (month, day) == (2, 29) and not calendar.isleap(year):
            day = 28
        celebrated = date(year, month, day)
        if celebrated >= today:
            return (celebrated - today).days <= days
    return False


def holds(node: dict, member, subscriber, data: dict, now: datetime, tenant: Tenant) -> bool:
    if "all" in node:
        return all(holds(n, member, subscriber, data, now, tenant) for n in node["all"])
    if "any" in node:
        return any(holds(n, member, subscriber, data, now, tenant) for n in node["any"])
    if "not" in node:
        return not holds(node["not"], member, subscriber, data, now, tenant)
    name, op, value = node["field"], node["op"], node.get("value")
    m, s = member, subscriber
    if name == "member":
        return (m is not None) == value
    if name == "sms_status":
        return _choose(s.status if s else "none", op, value)
    if name == "timezone":
        zone = s.timezone if s is not None and s.timezone else (m.timezone if m else s.timezone)
        return _choose(zone, op, value)
    member_fields = {
        "tier",
        "points_balance",
        "points_expiring",
        "birthday",
        "days_since_last_order",
        "orders_count",
        "lifetime_spend",
        "redeemed",
        "tags",
    }
    if name in member_fields and m is None:
        return False
    if name not in member_fields and s is None:
        return False
    if name == "tier":
        if op == "is":
            return m.tier_id == value
        if op == "is_not":
            return m.tier_id != value
        return m.tier_id is not None and data["tiers"][m.tier_id] >= data["tiers"][value]
    if name == "points_balance":
        return _compare(m.points_balance, op, value)
    if name == "points_expiring":
        until = now + node["days"] * DAY
        expiring = sum(
            lot.remaining
            for lot in data["lots"]
            if lot.member_id == m.pk
            and lot.remaining > 0
            and lot.matured
            and lot.expires_at is not None
            and now < lot.expires_at <= until
        )
        return _compare(expiring, op, value)
    if name == "birthday":
        if m.birthday_month is None:
            return False
        if op == "in_month":
            return m.birthday_month == value
        today = now.astimezone(__import__("zoneinfo").ZoneInfo(tenant.timezone)).date()
        return _next_birthday_in(m, today, value)
    if name == "days_since_last_order":
        return m.last_order_at is not None and _compare(_days(now, m.last_order_at), op, value)
    if name == "orders_count":
        return _compare(m.orders_count, op, value)
    if name == "lifetime_spend":
        return _compare(
            m.lifetime_spend,
            op,
            Decimal(str(value)) if op != "between" else [Decimal(str(v)) for v in value],
        )
    if name == "redeemed":
        times = [
            r.created_at
            for r in data["redemptions"]
            if r.member_id == m.pk and r.status != RedemptionStatus.CANCELLED
        ]
        return _activity(times, op, value, now)
    if name == "tags":
        wanted = [value] if op == "has" else value
        if op == "has_any":
            return bool(set(wanted) & set(m.tags))
        return set(wanted) <= set(m.tags)
    if name == "subscription_source":
        return _choose(s.source, op, value)
    if name == "subscribed_days":
        return (
            s.status == "subscribed"
            and s.subscribed_at is not None
            and _compare(_days(now, s.subscribed_at), op, value)
        )
    if name == "clicked":
        times = [
            link.first_clicked_at
            for link in data["links"]
            if link.subscriber_id == s.pk and link.first_clicked_at is not None
        ]
        return _activity(times, op, value, now)
    if name == "received":
        times = [
            message.sent_at
            for message in data["outbound"]
            if message.subscriber_id == s.pk
            and message.status in ("sent", "delivered")
            and message.sent_at is not None
            and node.get("kind") in (None, message.kind)
        ]
        return _activity(times, op, value, now)
    if name == "replied":
        times = [
            message.created_at
            for message in data["inbound"]
            if message.subscriber_id == s.pk and message.kind == "reply"
        ]
        return _activity(times, op, value, now)
    if name == "country":
        return _choose(s.country, op, value)
    if name == "state":
        return _choose(s.region, op, value)
    raise AssertionError(f"the oracle doesn't know {name}")


@dataclass(frozen=True)
class Expected:
    people: set
    numbers: set  # subscriber ids of matching pairs
    subscribed_numbers: set


def expected(world: World, rules: dict, now: datetime | None = None) -> Expected:
    now = now or world.now
    people, numbers, subscribed = set(), set(), set()
    for member, subscriber in pairs(world.data):
        if holds(rules, member, subscriber, world.data, now, world.tenant):
            people.add(person_key(member, subscriber))
            if subscriber is not None:
                numbers.add(subscriber.pk)
                if subscriber.status == "subscribed":
                    subscribed.add(subscriber.pk)
    return Expected(people, numbers, subscribed)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)
