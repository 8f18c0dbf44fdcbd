"""Every main dashboard page costs the same number of SQL queries however much the brand
holds: each list and detail page is counted with a little data, then again after more of
everything (members with orders and points, subscribers with texts and replies, campaigns
sent, flows with runs), and the two counts must be equal."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import Campaign, Flow, FlowRun
from automations.services.campaigns import campaign_create, campaign_schedule
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status
from automations.services.launch import campaign_launch
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import InboundMessage, OutboundMessage, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.inbound import inbound_receive
from messaging.services.setup import sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member
from programs.services.members import member_upsert
from programs.services.orders import order_record
from programs.services.program import reward_create, tier_create
from segments.models import Segment
from segments.services import segment_create

from ..conftest import signed_in

EVERYONE = {"field": "sms_status", "op": "is", "value": "subscribed"}


def grow(tenant, start: int, count: int) -> None:
    """`count` more members, each with an order, a subscribed number, a reply; a campaign
    sent to everyone; runs of the flow."""
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
    return tenant


def pages(tenant) -> list[str]:
    with tenant_scope(tenant):
        member = Member.objects.order_by("id").first()
        subscriber = Subscriber.objects.order_by("id").first()
        flow = Flow.objects.get()
        campaign = Campaign.objects.order_by("id").first()
        segment = Segment.objects.order_by("id").first()
    return [
        "/",
        "/members/",
        f"/members/{member.pk}/",
        "/program/",
        "/program/tiers/",
        "/program/rewards/",
        "/sms/subscribers/",
        f"/sms/subscribers/{subscriber.pk}/",
        "/sms/inbox/",
        f"/sms/inbox/{subscriber.pk}/",
        "/sms/settings/",
        "/segments/",
        f"/segments/{segment.pk}/",
        "/campaigns/",
        f"/campaigns/{campaign.pk}/",
        "/analytics/",
        "/flows/",
        f"/flows/{flow.pk}/",
        f"/flows/{flow.pk}/runs/",
        f"/flows/members/{member.pk}/",
        "/settings/api-keys/",
        "/settings/team/",
        "/settings/activity/",
        "/settings/usage/",
    ]


def counts(client, urls: list[str]) -> dict[str, int]:
    found = {}
    for url in urls:
        client.get(url)  # the first visit fills per-process caches
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, url
        found[url] = len(captured)
    return found


def test_no_page_costs_more_queries_with_more_data(shop, alice_brand):
    client = signed_in(alice_brand.owner)
    urls = pages(shop)
    few = counts(client, urls)
    grow(shop, 100, 12)
    with tenant_scope(shop):  # (the second count sees seven times the data)
        assert Member.objects.count() == 14
        assert FlowRun.objects.count() == 14
        assert InboundMessage.objects.count() == 14
        assert OutboundMessage.objects.filter(source="campaign").count() == 2 + 14
    more = counts(client, urls)
    grown = {url: (few[url], more[url]) for url in urls if more[url] != few[url]}
    assert grown == {}, grown
