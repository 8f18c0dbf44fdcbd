"""Sign-up, brand creation, and the home page: the setup checklist ticks itself off as each
step is done through the real pages and services; this month's numbers; what needs attention."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from automations.models import Flow
from loyaltysms import dashboard
from loyaltysms.models import ApiKey, Membership, Role, Tenant, User
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageStatus, OutboundMessage, Sender
from programs.models import Reward, Tier
from programs.services.program import STARTER_REWARDS, STARTER_TIERS, program_get

from ..automations.conftest import Clock, in_new_york, subscribe_number
from ..automations.test_prebuilt_flows import install, tick
from ..conftest import signed_in
from ..messaging.test_dashboard import settings_form

SIGNUP = {"email": "Dana@Shop.test", "password": "a-long-unusual-passphrase"}
BRAND = {
    "name": "Dana's Shop",
    "timezone": "Europe/London",
    "currency": "GBP",
    "default_country": "GB",
}


def sign_up(client: Client) -> Tenant:
    assert client.post(reverse("signup"), SIGNUP)["Location"] == reverse("brand_new")
    assert client.post(reverse("brand_new"), BRAND)["Location"] == reverse("home")
    return Tenant.objects.get(name="Dana's Shop")


def checklist_done(client: Client) -> set[str]:
    page = client.get(reverse("home"))
    assert page.status_code == 200
    checklist = page.context["checklist"]
    return {step.key for step in checklist.steps if step.done}


def test_sign_up_then_brand_makes_the_owner_with_no_key_yet(db):
    client = Client()
    tenant = sign_up(client)
    user = User.objects.get(email="dana@shop.test")  # stored lower-case
    assert (tenant.timezone, tenant.currency, tenant.default_country) == (
        "Europe/London",
        "GBP",
        "GB",
    )
    assert tenant.slug == "danas-shop"
    assert Membership.objects.get(tenant=tenant).user == user
    assert Membership.objects.get(tenant=tenant).role == Role.OWNER
    assert not ApiKey.objects.unscoped().filter(tenant=tenant).exists()
    home = client.get(reverse("home"))
    assert b"Dana&#x27;s Shop is ready" in home.content
    assert b"0 of 7 done" in home.content

    # The same name again (by the same person): a second brand, its own slug, switched to.
    assert client.post(reverse("brand_new"), BRAND)["Location"] == reverse("home")
    second = Tenant.objects.exclude(pk=tenant.pk).get(name="Dana's Shop")
    assert second.slug == "danas-shop-2"
    assert client.get(reverse("home")).context["current_tenant"] == second


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "not-an-email", "password": "a-long-unusual-passphrase"}, "email", "valid"),
        ({"email": "x@y.test", "password": "short"}, "password", "too short"),
        ({"email": "x@y.test", "password": "password123"}, "password", "too common"),
        ({"email": "alice@bakery.test", "password": "a-long-pass-9"}, "email", "sign in instead"),
        ({"email": "ALICE@bakery.test", "password": "a-long-pass-9"}, "email", "sign in instead"),
    ],
)
def test_sign_up_errors_stand_next_to_their_fields(alice_brand, data, field, message):
    response = Client().post(reverse("signup"), data)
    assert response.status_code == 422
    assert message in " ".join(response.context["form"].errors[field])
    assert User.objects.count() == 1  # alice only


def test_brand_form_refuses_unknown_zone_currency_and_country(db):
    client = Client()
    client.post(reverse("signup"), SIGNUP)
    response = client.post(
        reverse("brand_new"),
        {"name": "", "timezone": "Mars/Base", "currency": "XXX", "default_country": "ZZ"},
    )
    assert response.status_code == 422
    assert set(response.context["form"].errors) == {
        "name",
        "timezone",
        "currency",
        "default_country",
    }
    assert not Tenant.objects.exists()


def test_signup_and_brand_pages_need_the_right_state(alice_client):
    # Signed in already: sign-up moves on to making a brand.
    assert alice_client.get(reverse("signup"))["Location"] == reverse("brand_new")
    # Signed out: making a brand needs signing in first.
    response = Client().get(reverse("brand_new"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_checklist_ticks_itself_off_step_by_step(db):
    client = Client()
    tenant = in_new_york(sign_up(client))
    user = User.objects.get(email="dana@shop.test")
    assert checklist_done(client) == set()

    client.post(reverse("program_settings"), {**program_form(tenant), "name": "Dana Rewards"})
    assert checklist_done(client) == {"program"}

    response = client.post(reverse("setup_starter_program"))
    assert response["Location"] == reverse("home")
    with tenant_scope(tenant):
        assert [t.name for t in Tier.objects.order_by("threshold")] == [
            name for name, *_ in STARTER_TIERS
        ]
        assert Reward.objects.count() == len(STARTER_REWARDS)
    client.post(reverse("setup_starter_program"))  # twice is once
    with tenant_scope(tenant):
        assert (Tier.objects.count(), Reward.objects.count()) == (3, 3)
    assert checklist_done(client) == {"program", "tiers_rewards"}

    client.post(reverse("sms_sender_sandbox"))
    assert checklist_done(client) == {"program", "tiers_rewards", "sender"}

    # The compliance texts are prefilled: saving them unchanged is the review.
    response = client.post(reverse("sms_settings"), settings_form(tenant))
    assert response.status_code == 302, response.context["form"].errors
    assert "compliance" in checklist_done(client)

    client.post(reverse("settings_api_keys"), {"name": "Storefront"})
    assert "api_key" in checklist_done(client)

    clock = Clock(datetime(2026, 6, 10, 18, 0, tzinfo=UTC))  # 14:00 in New York
    flow = install(tenant, clock, "welcome_series", shop_url="https://dana.example/shop")
    assert "flow" in checklist_done(client)
    assert "first_text" not in checklist_done(client)

    subscribe_number(tenant, 1, clock())
    tick(tenant, clock)
    with tenant_scope(tenant):
        assert OutboundMessage.objects.get(source_ref=str(flow.pk)).status == MessageStatus.SENT
    home = client.get(reverse("home"))
    assert home.context["checklist"].complete
    assert b"Get set up" not in home.content
    assert user.memberships.get().tenant == tenant


def program_form(tenant: Tenant) -> dict:
    program = program_get(tenant)
    return {
        "name": program.name,
        "points_name": program.points_name,
        "currency": program.currency,
        "earn_rate": str(program.earn_rate),
        "rounding": program.rounding,
        "enrollment_bonus": program.enrollment_bonus,
        "birthday_bonus": program.birthday_bonus,
        "sms_bonus": program.sms_bonus,
        "pending_days": program.pending_days,
        "expiry_policy": program.expiry_policy,
        "expiry_days": "",
    }


def test_the_starter_program_needs_an_admin(alice_brand, bob):
    response = signed_in(bob).post(reverse("setup_starter_program"))
    assert response.status_code == 403
    with tenant_scope(alice_brand.tenant):
        assert not Tier.objects.exists()


def test_home_shows_this_months_numbers_and_what_needs_attention(alice_brand, alice_client):
    tenant = in_new_york(alice_brand.tenant)
    clock = Clock(timezone.now())
    for n in range(3):
        subscribe_number(tenant, n, clock())
    with tenant_scope(tenant):
        Flow.objects.create(
            name="Draft one",
            trigger={"type": "sms_subscribed"},
            trigger_type="sms_subscribed",
            steps={"start": "end", "steps": {"end": {"type": "end"}}},
            created_at=timezone.now(),
            updated_at=timezone.now(),
        )
    home = alice_client.get(reverse("home"))
    cards = {card["label"]: card for card in home.context["cards"]}
    assert cards["Subscribers"]["value"] == "3"
    assert cards["Subscribers"]["sub"].startswith("+3 net this month")
    assert cards["Delivery rate"]["value"] == "—"  # no marketing text yet
    assert b"1 flow in draft" in home.content
    assert b'id="analytics-daily"' in home.content
    month = home.context["month"]
    today = (month.end - timedelta(days=1)).date()  # the page's own "today" in the zone
    assert month.daily["day"][0] == today.replace(day=1).isoformat()
    assert len(month.daily["day"]) == today.day  # the 1st to today


def test_a_sender_with_a_long_queue_needs_attention(alice_brand):
    tenant = in_new_york(alice_brand.tenant)
    now = timezone.now()
    clock = Clock(now)
    subscriber = subscribe_number(tenant, 1, clock())
    with tenant_scope(tenant):
        sender = Sender.objects.get()
        due = 15 * 60 * sender.mps + 1  # more than 15 minutes of sending at its rate
        OutboundMessage.objects.bulk_create(
            OutboundMessage(
                tenant=tenant,
                subscriber=subscriber,
                sender=sender,
                to=subscriber.phone,
                kind="marketing",
                source="api",
                dedupe_key=f"backlog:{n}",
                body="Hi",
                encoding="GSM-7",
                segments=1,
                price_estimate=0,
                send_after=now,
                created_at=now,
            )
            for n in range(due)
        )
        items = dashboard.attention(tenant, failed=0, now=now)
    assert any(f"{due:,} texts waiting" in item.text for item in items)


def test_sign_up_can_be_closed(db, settings):
    assert reverse("signup").encode() in Client().get(reverse("login")).content
    settings.SIGNUP_OPEN = False
    assert reverse("signup").encode() not in Client().get(reverse("login")).content
    page = Client().get(reverse("signup"))
    assert page.status_code == 403 and b"invitation only" in page.content
    response = Client().post(reverse("signup"), SIGNUP)
    assert response.status_code == 403
    assert not User.objects.exists()
    # Nor does a signed-in person make brands then, unless they are staff.
    person = User.objects.create_user(email="p@x.test", password="a-long-pass-9")
    assert signed_in(person).post(reverse("brand_new"), BRAND).status_code == 403
    person.is_staff = True
    person.save()
    assert signed_in(person).post(reverse("brand_new"), BRAND).status_code == 302


def test_a_fields_help_and_errors_are_read_with_it(db):
    page = Client().post(reverse("signup"), {"email": "x", "password": "short"}).content.decode()
    for field in ("email", "password"):
        described = re.search(rf'aria-describedby="([^"]+)"[^>]*id="id_{field}"', page)
        assert described, field
        for target in described.group(1).split():
            assert f'id="{target}"' in page, target


def test_an_admin_can_put_the_checklist_away_and_bring_it_back(alice_brand, alice_client, bob):
    assert b"Get set up" in alice_client.get(reverse("home")).content
    assert signed_in(bob).post(reverse("setup_checklist_toggle"), {"hide": "1"}).status_code == 403
    alice_client.post(reverse("setup_checklist_toggle"), {"hide": "1"})
    home = alice_client.get(reverse("home"))
    assert b"Get set up" not in home.content and home.context["checklist"] is None
    assert b"Show the setup checklist" in home.content
    alice_client.post(reverse("setup_checklist_toggle"), {"hide": "0"})
    assert b"Get set up" in alice_client.get(reverse("home")).content


def test_starter_rewards_speak_the_brands_currency(db):
    client = Client()
    sign_up(client)  # a GBP brand
    client.post(reverse("setup_starter_program"))
    tenant = Tenant.objects.get(name="Dana's Shop")
    with tenant_scope(tenant):
        assert "5 GBP off" in set(Reward.objects.values_list("name", flat=True))
