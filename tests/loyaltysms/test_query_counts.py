"""Every main dashboard page costs the same number of SQL queries however much the brand
holds: each list and detail page is counted with a little data (2 members, made by the
services), then again with a brand of thousands (tests/loyaltysms/bulk_seed.py: members with
orders, ledgers and redemptions, numbers with consent evidence and inbox replies, a campaign
sent to all of them, a flow run for each, long histories on the rows the detail pages open),
and the two counts must be equal. Each page also has a ceiling of its own, so a page that
starts costing more — with any amount of data — shows up here."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import Campaign, CampaignRecipient, FlowRun, FlowRunLog
from automations.services.campaigns import campaign_create, campaign_schedule
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status
from automations.services.launch import campaign_launch
from automations.views import campaigns as campaign_views
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentRecord, InboundMessage, OutboundMessage, Subscriber
from messaging.services import setup as messaging_setup
from messaging.services.dispatch import dispatch_due
from messaging.services.inbound import inbound_receive
from messaging.services.setup import sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member, Order, PointsEntry
from programs.services import program as program_services
from programs.services.members import member_upsert, points_adjust
from programs.services.orders import order_record
from programs.services.program import program_get, program_update, reward_create, tier_create
from segments.services import segment_create

from ..conftest import signed_in
from .bulk_seed import seed_large, targets

EVERYONE = {"field": "sms_status", "op": "is", "value": "subscribed"}
BULK_MEMBERS = 5000

# The queries every dashboard page pays whatever it shows: the session, the user, their
# membership of the brand, the nav's unread count and the brands the user can switch to. A
# change to the layout (templates/base.html, its context processors) moves this one number.
CHROME = 5
# An htmx fragment (no layout): the session, the user, the membership.
FRAGMENT = 3

# Per page: the most queries it may cost, the layout's plus its own, as measured when this was
# written. A page over its ceiling costs more than it did: with any data (a new query on the
# page), or only with more data (an N+1, which the equality check names first). Lower a
# ceiling when a page gets cheaper; raise one only for a query the page really needs.
CEILINGS = {
    "home": CHROME + 9,  # the dashboard: checklist, month figures, what needs attention
    "members": CHROME + 1,
    "members search": CHROME + 1,
    "member detail": CHROME + 6,
    "member import": CHROME + 1,
    "program": CHROME + 4,
    "tiers": CHROME + 2,
    "rewards": CHROME + 2,
    "subscribers": CHROME + 2,
    "subscribers subscribed": CHROME + 2,
    "subscriber detail": CHROME + 4,
    "subscriber import": CHROME + 1,
    "inbox": CHROME + 1,
    "inbox unread": CHROME + 1,
    "inbox conversation": CHROME + 3,
    "sms settings": CHROME + 1,
    "segments": CHROME + 1,
    "segment detail": CHROME + 1,
    "segment count": FRAGMENT + 6,
    "segment new": CHROME + 0,
    "campaigns": CHROME + 1,
    "campaign new": CHROME + 1,
    "campaign detail": CHROME + 7,
    "campaign draft": CHROME + 11,
    "campaign progress": FRAGMENT + 1,
    "analytics": CHROME + 6,
    "flows": CHROME + 7,
    "flow detail": CHROME + 11,
    "flow edit": CHROME + 3,
    "flow runs": CHROME + 3,
    "flow run": CHROME + 5,
    "member flow runs": CHROME + 2,
    "api keys": CHROME + 1,
    "team": CHROME + 2,
    "activity": CHROME + 1,
    "usage": CHROME + 2,
}

# Pages whose count may differ between the small brand and the big one by a constant that is
# about what the data is, not how much of it there is: name → the most extra queries allowed.
VARIES = {
    # A campaign with a holdout group costs one more grouped query, its holdout's revenue
    # against the texted group's (automations.stats.campaign_stats). The first campaign of the
    # small brand (2 recipients) has no holdout; the big brand's (thousands) holds 5% out.
    "campaign detail": 1,
}


def grow(tenant, start: int, count: int) -> None:
    """`count` more members through the services, each with an order, a subscribed number,
    a reply; a campaign sent to everyone; runs of the flow."""
    now = timezone.now()
    sender = sender_default(tenant)
    for n in range(start, start + count):
        member = member_upsert(
            tenant=tenant, external_id=f"m{n}", now=now, first_name=f"Pat{n}", last_name="Lee"
        ).member
        order_record(
            tenant=tenant,
            order_id=f"o{n}",
            member_external_id=member.external_id,
            subtotal=Decimal(50 + n),
            currency="USD",
            now=now,
        )
        subscriber = subscriber_opt_in(
            tenant=tenant,
            phone=f"+1212555{n:04d}",
            evidence=Evidence(source="checkout"),
            now=now,
            member=member,
            double_opt_in=False,
            send_confirmation=False,
        )
        inbound_receive(
            sender=sender,
            params={
                "MessageSid": f"SM{tenant.pk:08d}{n:024d}",
                "From": subscriber.e164,
                "To": sender.phone_number,
                "Body": f"hello {n}",
                "NumMedia": "0",
            },
            now=now,
        )
    segment = segment_create(tenant=tenant, name=f"Everyone {start}", rules=EVERYONE, now=now)
    campaign = campaign_create(
        tenant=tenant, now=now, name=f"News {start}", body="News!", segment_ids=[segment.pk]
    )
    campaign_schedule(campaign=campaign, now=now)
    campaign_launch(campaign=campaign, now=now)
    dispatch_due(now=lambda: now + timedelta(seconds=1))
    flows_work_once(tenant=tenant, now=lambda: now + timedelta(seconds=2))


@pytest.fixture
def shop(alice_brand):
    tenant = alice_brand.tenant
    sender = sender_default(tenant)
    sender.mps = 1000
    sender.save(update_fields=["mps"])
    with tenant_scope(tenant):
        # Lots that expire: the member page then lists what expires when.
        program_update(program=program_get(tenant), expiry_policy="lot", expiry_days=365)
        tier_create(
            tenant=tenant,
            name="Gold",
            threshold=Decimal(100),
            basis="points_earned",
            period="lifetime",
        )
        reward_create(tenant=tenant, name="Free coffee", kind="custom", points_cost=50, value="x")
    flow = flow_create(
        tenant=tenant,
        now=timezone.now(),
        name="Welcome",
        trigger={"type": "member_enrolled"},
        steps={"start": "t", "steps": {"t": {"type": "send_sms", "body": "Hi!", "next": None}}},
    )
    flow_set_status(flow=flow, status="live", now=timezone.now())
    grow(tenant, 0, 2)
    with tenant_scope(tenant):
        points_adjust(
            member=Member.objects.order_by("id").first(),
            points=5,
            reason="Welcome gift",
            now=timezone.now(),
            actor=alice_brand.owner,
        )
    # A draft: its page previews the audience (a count and sample texts).
    campaign_create(
        tenant=tenant,
        now=timezone.now(),
        name="Draft",
        body="Hi {first_name|there}, you have {points_balance} points.",
        segment_ids=[targets(tenant).segment],
    )
    return tenant


@pytest.fixture
def steady_caches(monkeypatch):
    """The program, the tier ladder, the messaging settings and sender (per process) and a
    campaign's progress (the cache) are kept a few seconds: long enough here that none
    expires between a page's first visit and the counted one, however slow the machine."""
    monkeypatch.setattr(program_services, "SETTINGS_TTL", 3600.0)
    monkeypatch.setattr(messaging_setup, "SETTINGS_TTL", 3600.0)
    monkeypatch.setattr(campaign_views, "PROGRESS_CACHE_SECONDS", 3600)


def drop_caches(tenant) -> None:
    """What a page's first visit fills, emptied (so no page counts on another's)."""
    program_services.settings_changed(tenant)
    messaging_setup.messaging_changed(tenant)
    with tenant_scope(tenant):
        for campaign in Campaign.objects.filter(frozen_at__isnull=False):
            cache.delete(campaign_views._progress_key(campaign))


def pages(tenant) -> dict[str, str]:
    first = targets(tenant)
    with tenant_scope(tenant):
        draft = Campaign.objects.filter(status="draft").order_by("id").first()
        run = FlowRun.objects.filter(flow_id=first.flow).order_by("id").first()
    member, subscriber, flow = first.member, first.subscriber, first.flow
    return {
        "home": "/",
        "members": "/members/",
        "members search": "/members/?q=Lee",
        "member detail": f"/members/{member}/",
        "member import": "/members/import/",
        "program": "/program/",
        "tiers": "/program/tiers/",
        "rewards": "/program/rewards/",
        "subscribers": "/sms/subscribers/",
        "subscribers subscribed": "/sms/subscribers/?status=subscribed&q=555",
        "subscriber detail": f"/sms/subscribers/{subscriber}/",
        "subscriber import": "/sms/subscribers/import/",
        "inbox": "/sms/inbox/",
        "inbox unread": "/sms/inbox/?show=unread",
        "inbox conversation": f"/sms/inbox/{subscriber}/",
        "sms settings": "/sms/settings/",
        "segments": "/segments/",
        "segment detail": f"/segments/{first.segment}/",
        "segment count": f"/segments/{first.segment}/count/",
        "segment new": "/segments/new/",
        "campaigns": "/campaigns/",
        "campaign new": "/campaigns/new/",
        "campaign detail": f"/campaigns/{first.campaign}/",
        "campaign draft": f"/campaigns/{draft.pk}/",
        "campaign progress": f"/campaigns/{first.campaign}/progress/",
        "analytics": "/analytics/",
        "flows": "/flows/",
        "flow detail": f"/flows/{flow}/",
        "flow edit": f"/flows/{flow}/edit/",
        "flow runs": f"/flows/{flow}/runs/",
        "flow run": f"/flows/{flow}/runs/{run.pk}/",
        "member flow runs": f"/flows/members/{member}/",
        "api keys": "/settings/api-keys/",
        "team": "/settings/team/",
        "activity": "/settings/activity/",
        "usage": "/settings/usage/",
    }


def counts(client, tenant, urls: dict[str, str]) -> dict[str, int]:
    found = {}
    for name, url in urls.items():
        drop_caches(tenant)
        client.get(url)  # the first visit fills the caches (and reads the inbox)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, (name, url, response.status_code)
        found[name] = len(captured)
    return found


def test_no_page_costs_more_queries_with_more_data(shop, alice_brand, steady_caches):
    client = signed_in(alice_brand.owner)
    urls = pages(shop)
    assert set(CEILINGS) == set(urls), "every page counted has a ceiling"
    few = counts(client, shop, urls)

    grow(shop, 100, 12)  # through the services, as before…
    began = time.monotonic()
    seed_large(shop, owner=alice_brand.owner, members=BULK_MEMBERS)  # …then in bulk
    seeded_in = time.monotonic() - began
    first = targets(shop)
    with tenant_scope(shop):  # what the second count sees
        assert Member.objects.count() == 14 + BULK_MEMBERS
        assert Order.objects.count() > 2 * BULK_MEMBERS
        assert PointsEntry.objects.filter(member_id=first.member).count() > 500
        assert Subscriber.objects.count() > BULK_MEMBERS
        assert ConsentRecord.objects.count() > BULK_MEMBERS
        assert Subscriber.objects.filter(last_message_at__isnull=False).count() > 1000
        assert InboundMessage.objects.filter(subscriber_id=first.subscriber).count() > 300
        assert OutboundMessage.objects.filter(subscriber_id=first.subscriber).count() > 300
        recipients = CampaignRecipient.objects.filter(campaign_id=first.campaign).count()
        assert recipients > BULK_MEMBERS // 2
        assert OutboundMessage.objects.filter(source="campaign").count() > BULK_MEMBERS // 2
        assert FlowRun.objects.filter(flow_id=first.flow).count() > BULK_MEMBERS
        assert FlowRunLog.objects.count() > 2 * BULK_MEMBERS
        assert FlowRun.objects.filter(member_id=first.member).count() > 100
        assert Campaign.objects.count() > 50
    assert urls == pages(shop)  # the same rows opened
    more = counts(client, shop, urls)

    table = "\n".join(f"{name:24} {few[name]:3} {more[name]:3} ≤ {CEILINGS[name]}" for name in urls)
    print(f"\nseeded {BULK_MEMBERS} members in {seeded_in:.1f} s; page, few, many, ceiling:")
    print(table)
    grown = {
        name: (few[name], more[name])
        for name in urls
        if not few[name] <= more[name] <= few[name] + VARIES.get(name, 0)
    }
    assert grown == {}, f"queries grew with the data (few, many): {grown}"
    over = {name: more[name] for name in urls if more[name] > CEILINGS[name]}
    assert over == {}, f"over the ceiling: {over}"
