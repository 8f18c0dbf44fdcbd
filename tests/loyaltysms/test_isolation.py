"""Two brands side by side: nothing of one is reachable from the other.

The dashboard table below must name every URL that takes an id; a new one that isn't listed
fails test_every_id_route_is_covered, so it can't be added without an isolation check.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from loyaltysms import services
from loyaltysms.models import ApiKey, Membership, Role
from loyaltysms.tenancy.context import tenant_scope

from ..conftest import add_member, api_client, signed_in
from ..hooks.ids import webhook_route_ids


def other_tenant_ids(brand) -> dict[str, dict]:
    """For each dashboard route with an id: the kwargs naming an object of `brand`."""
    tenant = brand.tenant
    with tenant_scope(tenant):
        api_key = ApiKey.objects.first()
    teammate = add_member(tenant, f"teammate@{tenant.slug}.test", Role.MARKETER)
    invitation = services.invitation_create(
        tenant=tenant, email=f"new@{tenant.slug}.test", role=Role.VIEWER, invited_by=brand.owner
    ).invitation
    membership = Membership.objects.get(tenant=tenant, user=teammate)
    loyalty = other_tenant_api_ids(brand)
    from programs.models import Member, MultiplierEvent, Reward, Tier

    with tenant_scope(tenant):
        member = Member.objects.get(external_id=loyalty["api_member"]["external_id"])
        event = MultiplierEvent.objects.get(pk=loyalty["api_multiplier_event"]["event_id"])
        tier = Tier.objects.get(pk=loyalty["api_tier"]["tier_id"])
        reward = Reward.objects.get(pk=loyalty["api_reward"]["reward_id"])
    from programs.services.imports import member_import_queue

    job = member_import_queue(
        tenant=tenant, filename="x.csv", content="external_id\nz\n", user=brand.owner
    )
    from messaging.selectors import get_subscriber

    subscriber = get_subscriber(tenant, loyalty["api_subscriber"]["phone"])
    from messaging.services.imports import subscriber_import_queue

    sms_import = subscriber_import_queue(
        tenant=tenant, filename="n.csv", content="phone\n", consent_text="", user=brand.owner
    )
    from django.utils import timezone

    from segments.services import segment_create

    segment = segment_create(
        tenant=tenant, name=f"{tenant.name} regulars", rules={"all": []}, now=timezone.now()
    )
    from automations.services.campaigns import campaign_create

    campaign = campaign_create(
        tenant=tenant,
        now=timezone.now(),
        name=f"{tenant.name} news",
        body="News!",
        segment_ids=[segment.pk],
    )
    from automations.models import FlowDryRun, FlowRun
    from automations.services.flows import flow_create

    flow = flow_create(
        tenant=tenant,
        now=timezone.now(),
        name=f"{tenant.name} hello",
        trigger={"type": "member_enrolled"},
        steps={"start": "a", "steps": {"a": {"type": "end"}}},
    )
    with tenant_scope(tenant):
        run = FlowRun.objects.create(
            flow=flow, member=member, person=f"m{member.pk}", occurrence="x", step="a",
            entered_at=timezone.now(),
        )  # fmt: skip
        dry_run = FlowDryRun.objects.create(
            flow=flow, days=7, flow_version=1, created_at=timezone.now()
        )
    from loyaltysms.exports import export_create

    export = export_create(tenant=tenant, kind="members", filters={}, user=brand.owner)
    return {
        **{
            name: {"flow_id": flow.pk}
            for name in (
                "flow_detail",
                "flow_edit",
                "flow_status",
                "flow_delete",
                "flow_dry_run_start",
                "flow_runs",
            )
        },
        "flow_dry_run": {"flow_id": flow.pk, "job_id": dry_run.pk},
        "export_detail": {"export_id": export.pk},
        "export_download": {"export_id": export.pk},
        "flow_run": {"flow_id": flow.pk, "run_id": run.pk},
        "member_flow_runs": {"member_id": member.pk},
        **{
            name: {"campaign_id": campaign.pk}
            for name in (
                "campaign_detail",
                "campaign_edit",
                "campaign_schedule",
                "campaign_cancel",
                "campaign_progress",
                "campaign_stats_csv",
            )
        },
        "segment_edit": {"segment_id": segment.pk},
        "segment_count": {"segment_id": segment.pk},
        "segment_delete": {"segment_id": segment.pk},
        "subscriber_detail": {"subscriber_id": subscriber.pk},
        "subscribers_import_detail": {"import_id": sms_import.pk},
        "subscriber_consent_export": {"subscriber_id": subscriber.pk},
        "subscriber_unsubscribe": {"subscriber_id": subscriber.pk},
        "inbox_conversation": {"subscriber_id": subscriber.pk},
        "inbox_reply": {"subscriber_id": subscriber.pk},
        "inbox_resolve": {"subscriber_id": subscriber.pk},
        "member_import_detail": {"import_id": job.pk},
        "member_detail": {"member_id": member.pk},
        "member_adjust": {"member_id": member.pk},
        "multiplier_event_delete": {"event_id": event.pk},
        "tier_delete": {"tier_id": tier.pk},
        "reward_toggle": {"reward_id": reward.pk},
        "api_key_revoke": {"api_key_id": api_key.pk},
        "member_role": {"membership_id": membership.pk},
        "member_remove": {"membership_id": membership.pk},
        "invitation_revoke": {"invitation_id": invitation.pk},
        **webhook_route_ids(brand),  # tests/hooks/ids.py
    }


_api_ids: dict[int, dict] = {}  # tenant pk → ids; each test's brands are new (new pks)


def other_tenant_api_ids(brand) -> dict[str, dict]:
    """For each API route with an id: the kwargs naming an object of `brand`, built with the
    real services (once per brand)."""
    if brand.tenant.pk not in _api_ids:
        _api_ids[brand.tenant.pk] = _make_api_objects(brand)
    return _api_ids[brand.tenant.pk]


def _make_api_objects(brand) -> dict[str, dict]:
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from programs.services import members, orders, program, rewards

    tenant, now = brand.tenant, timezone.now()
    with tenant_scope(tenant):
        order = orders.order_record(
            tenant=tenant,
            order_id=f"{tenant.slug}-order",
            member_external_id=f"{tenant.slug}-member",
            subtotal=Decimal("500"),
            currency="USD",
            now=now,
        ).order
        member = order.member
        reward = program.reward_create(
            tenant=tenant, name="Secret", kind="custom", points_cost=10, value="x"
        )
        redemption = rewards.redemption_create(member=member, reward=reward, now=now)
        tier = program.tier_create(
            tenant=tenant, name="Own", threshold=Decimal(10_000), basis="spend", period="lifetime"
        )
        event = program.multiplier_event_create(
            tenant=tenant,
            name="2x",
            multiplier=Decimal(2),
            starts_at=now,
            ends_at=now + timedelta(days=1),
        )
        members.points_adjust(member=member, points=1, reason="x", now=now)
        from messaging.services.subscribers import Evidence, subscriber_opt_in

        subscriber = subscriber_opt_in(
            tenant=tenant,
            phone=f"+1212555{100 + tenant.pk % 100:04d}",  # a number of its own per brand
            evidence=Evidence(source="api", disclosure_text="x"),
            now=now,
        )
    ext = {"external_id": member.external_id}
    return {
        "api_member": ext,
        "api_member_ledger": ext,
        "api_member_adjustments": ext,
        "api_member_redemptions": ext,
        "api_order_refunds": {"order_id": order.order_id},
        "api_reward": {"reward_id": reward.pk},
        "api_redemption": {"redemption_id": redemption.pk},
        "api_redemption_use": {"redemption_id": redemption.pk},
        "api_redemption_cancel": {"redemption_id": redemption.pk},
        "api_tier": {"tier_id": tier.pk},
        "api_multiplier_event": {"event_id": event.pk},
        "api_subscriber": {"phone": subscriber.e164},
    }


GET_ONLY = {
    "member_detail",
    "member_import_detail",
    "subscriber_detail",
    "subscriber_consent_export",
    "inbox_conversation",
    "subscribers_import_detail",
    "segment_count",
    "campaign_detail",
    "campaign_progress",
    "campaign_stats_csv",
    "flow_detail",
    "flow_dry_run",
    "flow_runs",
    "flow_run",
    "member_flow_runs",
    "export_detail",
    "export_download",
}

# Routes with a path argument that is not an object id of a brand.
# Unguessable tokens: an invitation (tested in test_dashboard) and a tracked link (public by
# design; tests/messaging/test_links.py); what to export (always the current brand's); the
# widget's publishable key, which is how its public endpoints find their brand
# (tests/storefront/test_widget_api.py).
NOT_TENANT_IDS = {
    "invitation_accept",
    "short_link",
    "export_start",
    "widget_config",
    "widget_subscribe",
    "widget_member",
    "widget_redeem",
}


def all_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if getattr(pattern, "app_name", None) == "admin":
                continue  # Django's admin: staff only, not tenant-scoped
            yield from all_patterns(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def uncovered_id_routes(covered: set[str]) -> set[str]:
    """The URL conf's routes that take an argument and that the sweep doesn't know."""
    with_args = {pattern.name for _, pattern in all_patterns() if pattern.pattern.converters}
    return with_args - covered - NOT_TENANT_IDS


def leaking_routes(client, ids: dict[str, dict], method: str) -> list[tuple[str, int]]:
    """Routes that answer another brand's ids with anything but the 404 of a missing id (or
    the 405 of a method the route doesn't have)."""
    leaks = []
    for name, kwargs in ids.items():
        response = getattr(client, method)(reverse(name, kwargs=kwargs))
        expected = {404} if method == "post" and name not in GET_ONLY else {404, 405}
        if response.status_code not in expected:
            leaks.append((name, response.status_code))
    return leaks


def test_every_id_route_is_covered(alice_brand, charlie_brand):
    covered = set(other_tenant_ids(charlie_brand)) | set(other_tenant_api_ids(charlie_brand))
    assert uncovered_id_routes(covered) == set(), "add these routes to other_tenant_ids()"


@pytest.mark.parametrize("method", ["get", "post"])
def test_other_tenants_ids_answer_404_on_every_dashboard_route(alice_brand, charlie_brand, method):
    client = signed_in(alice_brand.owner)
    assert leaking_routes(client, other_tenant_ids(charlie_brand), method) == []
    # And nothing of charlie's changed.
    with tenant_scope(charlie_brand.tenant):
        assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0
    assert Membership.objects.filter(tenant=charlie_brand.tenant).count() == 2


def test_own_ids_work_on_the_same_routes(alice_brand):
    client = signed_in(alice_brand.owner)
    ids = other_tenant_ids(alice_brand)
    for name in ["api_key_revoke", "invitation_revoke", "member_remove"]:
        response = client.post(reverse(name, kwargs=ids[name]))
        assert response.status_code == 302, name


DASHBOARD_PAGES = [
    "home",
    "settings_api_keys",
    "settings_team",
    "settings_activity",
    "members",
    "program_settings",
    "program_tiers",
    "program_rewards",
    "subscribers",
    "subscribers_import",
    "inbox",
    "sms_settings",
    "sms_simulator",
    "segments",
    "segment_new",
]


def test_dashboard_pages_show_only_the_current_brand(alice_brand, charlie_brand):
    client = signed_in(alice_brand.owner)
    for name in DASHBOARD_PAGES:
        body = client.get(reverse(name)).content.decode()
        assert "Charlie" not in body and "charlie@" not in body, name


def test_switching_to_a_brand_you_are_not_in_is_refused(alice_brand, charlie_brand):
    client = signed_in(alice_brand.owner)
    client.post(reverse("switch_tenant"), {"tenant_id": charlie_brand.tenant.pk})
    body = client.get(reverse("settings_api_keys")).content.decode()
    assert "Alice&#x27;s Bakery" in body and "Charlie" not in body
    # A forged session pointing at charlie's brand is ignored too.
    session = client.session
    session["tenant_id"] = charlie_brand.tenant.pk
    session.save()
    body = client.get(reverse("home")).content.decode()
    assert "Alice&#x27;s Bakery" in body and "Charlie" not in body


def test_a_user_in_two_brands_switches_between_them(alice_brand, charlie_brand):
    add_member(charlie_brand.tenant, alice_brand.owner.email, Role.VIEWER)
    client = signed_in(alice_brand.owner)
    assert "Alice&#x27;s Bakery" in client.get("/").content.decode()
    client.post(reverse("switch_tenant"), {"tenant_id": charlie_brand.tenant.pk})
    body = client.get("/").content.decode()
    assert "<h1>Charlie&#x27;s Cafe</h1>" in body and "Viewer" in body
    # As a viewer there, she can't revoke charlie's keys.
    with tenant_scope(charlie_brand.tenant):
        key = ApiKey.objects.first()
    assert client.post(reverse("api_key_revoke", args=[key.pk])).status_code == 403


@pytest.mark.parametrize(
    ("role", "name", "expected"),
    [
        (Role.VIEWER, "settings_api_keys", 403),
        (Role.VIEWER, "settings_team", 403),
        (Role.MARKETER, "settings_api_keys", 403),
        (Role.MARKETER, "settings_team", 403),
    ],
)
def test_role_limits_answer_403(alice_brand, role, name, expected):
    user = add_member(alice_brand.tenant, f"{role}@bakery.test", role)
    client = signed_in(user)
    assert client.get(reverse(name)).status_code == 200  # reading is fine
    response = client.post(reverse(name), {"name": "k", "email": "x@y.test", "role": "viewer"})
    assert response.status_code == expected
    with tenant_scope(alice_brand.tenant):
        assert ApiKey.objects.count() == 1


def test_viewer_cannot_change_anything(alice_brand, vera):
    client = signed_in(vera)
    ids = other_tenant_ids(alice_brand)
    for name, kwargs in ids.items():
        expected = 405 if name in GET_ONLY else 403
        assert client.post(reverse(name, kwargs=kwargs)).status_code == expected, name
    assert client.get(reverse("settings_activity")).status_code == 403


def test_api_key_sees_only_its_own_brand(alice_brand, charlie_brand):
    body = api_client(alice_brand.api_key).get("/api/v1/tenant").json()
    assert body["slug"] == "alices-bakery"
    body = api_client(charlie_brand.api_key).get("/api/v1/tenant").json()
    assert body["slug"] == "charlies-cafe"


def _charlies_state(brand):
    from messaging.models import ConsentRecord, Subscriber
    from programs.models import Member, PointsEntry, Redemption, Refund, Reward, Tier

    with tenant_scope(brand.tenant):
        return (
            list(Subscriber.objects.values_list("phone", "status")),
            ConsentRecord.objects.count(),
            list(Member.objects.values_list("external_id", "points_balance", "email")),
            PointsEntry.objects.count(),
            list(Redemption.objects.values_list("status", flat=True)),
            Refund.objects.count(),
            list(Reward.objects.values_list("name", "points_cost", "active")),
            list(Tier.objects.values_list("name", "threshold")),
        )


def test_other_tenants_ids_answer_404_on_every_api_route(alice_brand, charlie_brand):
    ids = other_tenant_api_ids(charlie_brand)
    other_tenant_api_ids(alice_brand)  # alice has objects of her own, with different ids
    before = _charlies_state(charlie_brand)
    client = api_client(alice_brand.api_key)
    bodies = {
        "post": '{"points": 5, "reason": "x", "refund_id": "r", "amount": "1.00", "reward_id": 1}',
        "patch": '{"name": "mine", "points_cost": 1}',
    }
    for name, kwargs in ids.items():
        url = reverse(name, kwargs=kwargs)
        for method in ("get", "post", "patch", "delete"):
            response = getattr(client, method)(
                url, data=bodies.get(method), content_type="application/json"
            )
            # A method a route doesn't have is 405 before any lookup; every other answer is
            # the same 404 a missing id gets.
            assert response.status_code in {404, 405}, (name, method, response.status_code)
            if response.status_code == 404:
                assert response.json()["status"] == 404
    assert _charlies_state(charlie_brand) == before
