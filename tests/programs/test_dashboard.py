"""The loyalty pages of the dashboard: members, a member's ledger, program, tiers, rewards."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyaltysms.models import AuditEvent, Role
from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member, MultiplierEvent, PointsEntry, Program, Reward, Tier
from programs.services import members, orders, program

from ..conftest import add_member, signed_in


@pytest.fixture
def shop(alice_brand):
    """Alice's brand with a tier ladder, a reward and two members with history."""
    tenant, now = alice_brand.tenant, timezone.now()
    with tenant_scope(tenant):
        program.tier_create(
            tenant=tenant,
            name="Silver",
            threshold=Decimal(100),
            basis="points_earned",
            period="calendar_year",
        )
        program.tier_create(
            tenant=tenant,
            name="Gold",
            threshold=Decimal(500),
            basis="points_earned",
            period="calendar_year",
        )
        program.reward_create(
            tenant=tenant,
            name="Free coffee",
            kind="free_product",
            points_cost=150,
            value="SKU-COFFEE",
        )
        members.member_upsert(
            tenant=tenant,
            external_id="ann",
            now=now,
            first_name="Ann",
            last_name="Lee",
            email="ann@example.com",
            phone="+12125550101",
        )
        members.member_upsert(
            tenant=tenant, external_id="bo", now=now, first_name="Bo", email="bo@example.com"
        )
        orders.order_record(
            tenant=tenant,
            order_id="o-1",
            member_external_id="ann",
            subtotal=Decimal("240.00"),
            currency="USD",
            now=now,
        )
    return alice_brand


def member(external_id: str, brand) -> Member:
    with tenant_scope(brand.tenant):
        return Member.objects.get(external_id=external_id)


def test_members_list_searches_by_name_email_phone_and_external_id(shop):
    client = signed_in(shop.owner)
    page = client.get(reverse("members")).content.decode()
    assert "Ann Lee" in page and "Bo" in page and "Silver" in page
    for query in ["Lee", "ann@example", "5550101", "ann"]:
        body = client.get(reverse("members"), {"q": query}).content.decode()
        assert "Ann Lee" in body and "bo@example.com" not in body, query
    assert "No member matches" in client.get(reverse("members"), {"q": "zzz"}).content.decode()


def test_members_list_pages_by_keyset(shop):
    tenant, now = shop.tenant, timezone.now()
    with tenant_scope(tenant):
        for n in range(60):
            members.member_upsert(tenant=tenant, external_id=f"bulk-{n:02d}", now=now)
    client = signed_in(shop.owner)
    first = client.get(reverse("members")).content.decode()
    assert "bulk-59" in first and "Next page" in first and "bulk-00" not in first
    after = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(reverse("members") + after).content.decode()
    assert "bulk-00" in second and "bulk-59" not in second and "Next page" not in second


def test_member_page_shows_balance_progress_and_ledger(shop):
    client = signed_in(shop.owner)
    ann = member("ann", shop)
    page = client.get(reverse("member_detail", args=[ann.pk])).content.decode()
    assert ">240<" in page  # balance
    assert "260 points to Gold" in page
    assert '<progress max="100" value="48"' in page
    assert "Order o-1" in page


def test_manual_adjustment_needs_a_reason_and_records_who(shop):
    client = signed_in(shop.owner)
    ann = member("ann", shop)
    url = reverse("member_adjust", args=[ann.pk])
    assert client.post(url, {"points": "25"}).status_code == 422
    response = client.post(url, {"points": "-25", "reason": "Damaged delivery refund"})
    assert response.status_code == 302
    with tenant_scope(shop.tenant):
        entry = PointsEntry.objects.filter(member=ann).latest("pk")
    assert (entry.kind, entry.points, entry.actor) == ("adjust", -25, shop.owner)
    too_much = client.post(url, {"points": "-10000", "reason": "x"})
    assert too_much.status_code == 422
    assert "enough points" in too_much.content.decode() or "needed" in too_much.content.decode()


def test_viewers_see_members_but_cannot_adjust(shop):
    viewer = add_member(shop.tenant, "v@bakery.test", Role.VIEWER)
    client = signed_in(viewer)
    ann = member("ann", shop)
    page = client.get(reverse("member_detail", args=[ann.pk])).content.decode()
    assert "Adjust points" not in page
    url = reverse("member_adjust", args=[ann.pk])
    assert client.post(url, {"points": "5", "reason": "x"}).status_code == 403


def test_program_settings_save_and_validate(shop):
    client = signed_in(shop.owner)
    url = reverse("program_settings")
    form = {
        "name": "Rewards",
        "points_name": "beans",
        "earn_rate": "2",
        "rounding": "floor",
        "enrollment_bonus": "10",
        "birthday_bonus": "0",
        "sms_bonus": "0",
        "pending_days": "0",
        "expiry_policy": "lot",
        "expiry_days": "",
    }
    bad = client.post(url, form)
    assert bad.status_code == 422 and "number of days" in bad.content.decode()
    assert client.post(url, form | {"expiry_days": "365"}).status_code == 302
    with tenant_scope(shop.tenant):
        saved = Program.objects.get()
        assert (saved.points_name, saved.earn_rate, saved.expiry_days) == ("beans", 2, 365)
        assert AuditEvent.objects.filter(action="program.updated").exists()


def test_marketers_cannot_change_the_program(shop, bob):
    client = signed_in(bob)
    assert client.get(reverse("program_settings")).status_code == 200
    assert client.post(reverse("program_settings"), {"points_name": "x"}).status_code == 403
    assert client.post(reverse("program_tiers"), {"name": "x"}).status_code == 403


def test_tiers_page_adds_and_refuses_a_second_ladder(shop):
    client = signed_in(shop.owner)
    url = reverse("program_tiers")
    ok = {
        "name": "Platinum",
        "threshold": "2000",
        "basis": "points_earned",
        "period": "calendar_year",
        "earn_multiplier": "1.5",
    }
    assert client.post(url, ok).status_code == 302
    other = client.post(url, ok | {"name": "Spendy", "threshold": "50", "basis": "spend"})
    assert other.status_code == 422 and "one basis and period" in other.content.decode()
    with tenant_scope(shop.tenant):
        assert list(Tier.objects.order_by("threshold").values_list("name", flat=True)) == [
            "Silver",
            "Gold",
            "Platinum",
        ]


def test_rewards_page_adds_and_retires(shop):
    client = signed_in(shop.owner)
    url = reverse("program_rewards")
    assert (
        client.post(
            url, {"name": "5 off", "kind": "fixed_amount", "points_cost": "500", "value": "5"}
        ).status_code
        == 302
    )
    bad = client.post(url, {"name": "x", "kind": "percent_off", "points_cost": "5", "value": "250"})
    assert bad.status_code == 422
    with tenant_scope(shop.tenant):
        reward = Reward.objects.get(name="5 off")
    assert reward.value == "5.00"
    client.post(reverse("reward_toggle", args=[reward.pk]))
    reward.refresh_from_db()
    assert reward.active is False


def test_multiplier_events_are_in_the_brands_time_zone(shop):
    client = signed_in(shop.owner)
    response = client.post(
        reverse("multiplier_event_create"),
        {
            "name": "Double points",
            "multiplier": "2",
            "starts_at": "2026-12-24T00:00",
            "ends_at": "2026-12-26T00:00",
            "tier": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_scope(shop.tenant):
        event = MultiplierEvent.objects.get()
    assert event.starts_at.isoformat() == "2026-12-24T05:00:00+00:00"  # midnight in New York
    assert "Double points" in client.get(reverse("program_settings")).content.decode()
    client.post(reverse("multiplier_event_delete", args=[event.pk]))
    with tenant_scope(shop.tenant):
        assert not MultiplierEvent.objects.exists()


def test_member_import_runs_in_the_background_and_shows_progress(
    shop, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from programs.models import MemberImport
    from programs.tasks import import_members

    client = signed_in(shop.owner)
    csv = b"external_id,first_name,phone\nnew-1,Cy,+12125550111\nnew-2,Di,not-a-phone\nann,Annie,\n"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("member_import"), {"file": SimpleUploadedFile("m.csv", csv, "text/csv")}
        )
    assert response.status_code == 302 and len(callbacks) == 1  # a task, sent on commit
    with tenant_scope(shop.tenant):
        job = MemberImport.objects.get()
    queued = client.get(response.url, headers={"HX-Request": "true"}).content.decode()
    assert "Queued" in queued and 'hx-trigger="every 1s"' in queued and "0 of 3 rows" in queued
    import_members.apply(args=[shop.tenant.pk, job.pk]).get()  # the worker's part
    import_members.apply(args=[shop.tenant.pk, job.pk]).get()  # a redelivery does nothing
    page = client.get(response.url).content.decode()
    assert "created 1, updated 1, failed 1." in page and "hx-trigger" not in page
    assert "new-2" in page and "phone" in page
    assert member("ann", shop).first_name == "Annie"
    job.refresh_from_db()
    assert (job.status, job.processed_rows, job.content) == ("done", 3, "")
