"""The widget's public endpoints: what the publishable key can do and nothing more — the
store origins it is limited to (CORS and server-side), double opt-in with the exact
disclosure as evidence, a signed customer's points and redemptions only, rate limits."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from loyaltysms.models import AuditEvent
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentRecord, OutboundMessage, Subscriber, SubscriberStatus
from messaging.services.setup import messaging_settings_get
from messaging.services.subscribers import Evidence, subscriber_opt_in
from storefront.services import customer_signature, widget_get, widget_secret_roll, widget_update

from ..conftest import signed_in
from ..programs.conftest import assert_problem

STORE = "https://shop.alices.example"


class Store:
    """A page of the brand's store calling the widget's endpoints from a browser."""

    def __init__(self, key: str, origin: str | None = STORE):
        self.key = key
        self.headers = {"Origin": origin} if origin else {}
        self.client = Client()

    def url(self, name: str) -> str:
        return reverse(name, args=[self.key])

    def get(self, name: str, **params):
        return self.client.get(self.url(name), params, headers=self.headers)

    def post(self, name: str, body: dict):
        return self.client.post(
            self.url(name), json.dumps(body), content_type="application/json", headers=self.headers
        )

    def sign_up(self, phone: str, disclosure_version: int) -> int:
        """An SMS sign-up with consent to this disclosure; the answer's status code."""
        body = {"phone": phone, "consent": True, "disclosure_version": disclosure_version}
        return self.post("widget_subscribe", body).status_code


@pytest.fixture
def widget(alice_brand):
    widget = widget_get(alice_brand.tenant)
    widget_update(widget=widget, origins=[STORE], enabled=True)
    widget.secret = widget_secret_roll(widget=widget)
    return widget


@pytest.fixture
def store(widget) -> Store:
    return Store(widget.publishable_key)


def signed(widget, customer: str, *, age: int = 0) -> dict:
    ts = int(time.time()) - age
    return {
        "customer": customer,
        "ts": str(ts),
        "signature": customer_signature(widget.secret, customer, ts),
    }


def earn(alice_api, customer: str, amount: int) -> None:
    order = {
        "order_id": f"o-{customer}-{amount}",
        "member": customer,
        "subtotal": str(amount),
        "currency": "USD",
    }
    assert alice_api.post("orders", order).status_code == 201


def test_config_has_the_program_rewards_and_the_disclosure(store, alice_api, alice_brand):
    alice_api.post(
        "rewards", {"name": "$5 off", "kind": "fixed_amount", "points_cost": 100, "value": "5.00"}
    )
    response = store.get("widget_config")
    assert response.status_code == 200
    body = response.json()
    settings = messaging_settings_get(alice_brand.tenant)
    assert body["brand"] == "Alice's Bakery"
    assert body["disclosure"] == {
        "text": settings.disclosure_text,
        "version": settings.disclosure_version,
        "terms_url": "",
        "privacy_url": "",
    }
    assert [r["name"] for r in body["rewards"]] == ["$5 off"]
    assert response["Access-Control-Allow-Origin"] == STORE
    assert response["Cache-Control"] == "no-store"


def test_only_the_brands_store_origins_may_call_from_a_browser(widget, store):
    stranger = Store(widget.publishable_key, origin="https://evil.example")
    response = stranger.get("widget_config")
    assert_problem(response, 403)
    assert "Access-Control-Allow-Origin" not in response
    # Not even a "simple" POST (no preflight) gets through: refused before anything happens.
    refused = stranger.post(
        "widget_subscribe", {"phone": "+12125550100", "consent": True, "disclosure_version": 1}
    )
    assert_problem(refused, 403)
    assert not Subscriber.objects.unscoped().exists()
    # The preflight of a listed origin.
    preflight = store.client.options(store.url("widget_subscribe"), headers=store.headers)
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == STORE
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    # A server calling without an Origin gets no CORS headers (it needs none).
    direct = Store(widget.publishable_key, origin=None).get("widget_config")
    assert direct.status_code == 200 and "Access-Control-Allow-Origin" not in direct


def test_unknown_or_switched_off_keys_answer_404(widget, store):
    assert_problem(Store("pk_nope").get("widget_config"), 404)
    assert_problem(Store("lsk_x").get("widget_config"), 404)
    widget_update(widget=widget, origins=[STORE], enabled=False)
    assert_problem(store.get("widget_config"), 404)


def test_sign_up_is_a_double_opt_in_with_the_exact_disclosure_as_evidence(store, alice_brand):
    tenant = alice_brand.tenant
    settings = messaging_settings_get(tenant)
    response = store.post(
        "widget_subscribe",
        {
            "phone": "(212) 555-0123",  # the brand's default country reads it
            "consent": True,
            "disclosure_version": settings.disclosure_version,
            "page_url": "https://shop.alices.example/rewards",
        },
    )
    assert response.status_code == 202, response.content
    with tenant_scope(tenant):
        subscriber = Subscriber.objects.get()
        record = ConsentRecord.objects.get(subscriber=subscriber)
        confirm = OutboundMessage.objects.get(subscriber=subscriber)
    assert str(subscriber.phone) == "+12125550123"
    assert subscriber.status == SubscriberStatus.PENDING
    assert subscriber.source == "loyalty_page"
    assert (record.source, record.disclosure_text, record.disclosure_version) == (
        "loyalty_page",
        settings.disclosure_text,
        str(settings.disclosure_version),
    )
    assert record.page_url == "https://shop.alices.example/rewards"
    assert record.ip == "127.0.0.1"
    assert record.evidence == {"widget": store.key}
    assert "Reply Y to confirm" in confirm.body


def test_the_answer_is_the_same_for_a_number_subscribed_already(store, alice_brand):
    from django.utils import timezone

    subscriber_opt_in(
        tenant=alice_brand.tenant,
        phone="+12125550124",
        evidence=Evidence(source="checkout"),
        now=timezone.now(),
        double_opt_in=False,
        send_confirmation=False,
    )
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    new = store.post(
        "widget_subscribe",
        {"phone": "+12125550125", "consent": True, "disclosure_version": version},
    )
    old = store.post(
        "widget_subscribe",
        {"phone": "+12125550124", "consent": True, "disclosure_version": version},
    )
    assert (new.status_code, new.json()) == (old.status_code, old.json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "+12125550100", "consent": False, "disclosure_version": 1}, "consent"),
        ({"phone": "+12125550100", "disclosure_version": 1}, "consent"),
        ({"phone": "not a phone", "consent": True, "disclosure_version": 1}, "phone"),
        ({"phone": "", "consent": True, "disclosure_version": 1}, "phone"),
        (
            {"phone": "+12125550100", "consent": True, "disclosure_version": 99},
            "disclosure_version",
        ),
        ({"phone": "+12125550100", "consent": True}, "disclosure_version"),
        ({"phone": ["x"], "consent": "yes", "disclosure_version": "one"}, "disclosure_version"),
    ],
)
def test_bad_sign_ups_are_refused_next_to_their_field(store, body, field):
    assert_problem(store.post("widget_subscribe", body), 400, field)
    assert not Subscriber.objects.unscoped().exists()


def test_a_signed_customer_reads_their_points_and_redeems(widget, store, alice_api):
    reward = alice_api.post(
        "rewards",
        {"name": "Free cookie", "kind": "free_product", "points_cost": 100, "value": "CK"},
    ).json()
    earn(alice_api, "cust-7", 150)
    me = signed(widget, "cust-7")
    body = store.post("widget_member", me).json()
    assert body["points_balance"] == 150
    assert body["rewards"] == [
        {
            "id": reward["id"],
            "name": "Free cookie",
            "kind": "free_product",
            "points_cost": 100,
            "affordable": True,
        }
    ]
    redeemed = store.post("widget_redeem", {**me, "reward_id": reward["id"]})
    assert redeemed.status_code == 201
    assert redeemed.json()["points_balance"] == 50 and redeemed.json()["code"]
    assert_problem(store.post("widget_redeem", {**me, "reward_id": reward["id"]}), 409)  # short
    after = store.post("widget_member", me).json()
    assert after["points_balance"] == 50
    assert after["redemptions"][0]["code"] == redeemed.json()["code"]


def test_a_page_can_read_no_other_customer(widget, store, alice_api):
    earn(alice_api, "cust-7", 150)
    earn(alice_api, "cust-8", 900)
    mine = signed(widget, "cust-7")
    assert_problem(store.post("widget_member", {**mine, "customer": "cust-8"}), 401)
    assert_problem(store.post("widget_member", {"customer": "cust-8"}), 401)  # no signature
    assert_problem(store.post("widget_member", signed(widget, "cust-7", age=25 * 3600)), 401)
    forged = {**mine, "signature": customer_signature("wsk_guess", "cust-8", int(mine["ts"]))}
    assert_problem(store.post("widget_member", {**forged, "customer": "cust-8"}), 401)
    assert_problem(store.post("widget_redeem", {**mine, "customer": "cust-8", "reward_id": 1}), 401)
    # A rolled secret ends the old signatures at once.
    widget_secret_roll(widget=widget)
    assert_problem(store.post("widget_member", mine), 401)


def test_another_brands_members_and_rewards_are_out_of_reach(widget, store, charlie_api, alice_api):
    charlie_reward = charlie_api.post(
        "rewards", {"name": "Latte", "kind": "custom", "points_cost": 10, "value": "x"}
    ).json()
    earn(charlie_api, "cust-9", 500)
    assert_problem(store.post("widget_member", signed(widget, "cust-9")), 404)
    earn(alice_api, "cust-7", 500)
    redeem = store.post(
        "widget_redeem", {**signed(widget, "cust-7"), "reward_id": charlie_reward["id"]}
    )
    assert_problem(redeem, 404)


def test_sign_ups_are_rate_limited_per_visitor(store, alice_brand, caplog):
    cache.clear()
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    with caplog.at_level(logging.WARNING, logger="django.request"):
        answers = [store.sign_up(f"+1212555{n:04d}", version) for n in range(11)]
    assert answers == [202] * 10 + [429]
    # Logged as any 4xx is (only the REST API's brand limit logs a count instead).
    assert [r.status_code for r in caplog.records if r.name == "django.request"] == [429]


def test_the_script_is_served_for_any_store(client):
    response = client.get(reverse("widget_script"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert b"data-loyaltysms-widget" in response.content


def test_the_settings_page(alice_brand, alice_client, vera):
    page = alice_client.get(reverse("settings_widget"))
    widget = page.context["widget"]
    assert widget.publishable_key.encode() in page.content
    bad = alice_client.post(
        reverse("settings_widget"),
        {"allowed_origins": "ftp://x\nhttp://shop.example", "enabled": "on"},
    )
    assert bad.status_code == 422
    assert "ftp://x" in bad.content.decode() and "must use https" in bad.content.decode()
    alice_client.post(
        reverse("settings_widget"),
        {"allowed_origins": "https://Shop.Example.com/\nhttp://localhost:8080", "enabled": "on"},
    )
    widget.refresh_from_db()
    assert widget.allowed_origins == ["http://localhost:8080", "https://shop.example.com"]
    rolled = alice_client.post(reverse("settings_widget_secret")).content.decode()
    assert 'id="new-widget-secret">wsk_' in rolled
    assert "wsk_" not in alice_client.get(reverse("settings_widget")).content.decode()
    viewer = signed_in(vera)
    assert viewer.get(reverse("settings_widget")).status_code == 200
    assert viewer.post(reverse("settings_widget"), {"allowed_origins": ""}).status_code == 403
    assert viewer.post(reverse("settings_widget_secret")).status_code == 403
    with tenant_scope(alice_brand.tenant):
        actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"widget.updated", "widget.secret_rolled"} <= actions


def test_a_forged_forwarded_for_gets_no_fresh_quota_and_a_number_is_asked_once_a_day(
    store, alice_brand
):
    cache.clear()
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    body = {"phone": "+12125550131", "consent": True, "disclosure_version": version}
    answers = []
    for n in range(12):
        store.headers["X-Forwarded-For"] = f"203.0.113.{n}"
        answers.append(store.post("widget_subscribe", body).status_code)
    assert answers == [202] * 10 + [429] * 2  # one visitor, whatever the header says
    with tenant_scope(alice_brand.tenant):
        texts = OutboundMessage.objects.filter(to="+12125550131").count()
        record = ConsentRecord.objects.get()
    assert texts == 1  # the number was asked once
    assert record.ip == "127.0.0.1"


def test_a_brands_sign_ups_are_capped_per_hour(store, alice_brand, settings):
    cache.clear()
    settings.WIDGET_SIGNUPS_PER_HOUR = 3
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    answers = [store.sign_up(f"+1212555014{n}", version) for n in range(4)]
    assert answers == [202, 202, 202, 429]


def test_a_sign_up_never_takes_another_members_number(widget, store, alice_api, alice_brand):
    from django.utils import timezone

    from programs.models import Member

    earn(alice_api, "victim", 10)
    earn(alice_api, "mallory", 10)
    with tenant_scope(alice_brand.tenant):
        victim = Member.objects.get(external_id="victim")
    subscriber_opt_in(
        tenant=alice_brand.tenant,
        phone="+12125550150",
        evidence=Evidence(source="checkout"),
        now=timezone.now(),
        member=victim,
        double_opt_in=False,
        send_confirmation=False,
    )
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    response = store.post(
        "widget_subscribe",
        {"phone": "+12125550150", "consent": True, "disclosure_version": version}
        | signed(widget, "mallory"),
    )
    assert response.status_code == 202
    with tenant_scope(alice_brand.tenant):
        assert Subscriber.objects.get(phone="+12125550150").member_id == victim.pk


def test_a_signed_customer_who_isnt_a_member_yet_can_sign_up(widget, store, alice_brand):
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    me = signed(widget, "newcust")
    assert_problem(store.post("widget_member", me), 404)
    body = {"phone": "+12125550160", "consent": True, "disclosure_version": version} | me
    assert store.post("widget_subscribe", body).status_code == 202


@pytest.mark.parametrize("signature", ["é" * 64, "\x00", "zz", "A" * 64 + "!", "0" * 63, "00" * 40])
def test_odd_signatures_are_401_never_a_500(widget, store, signature):
    me = {**signed(widget, "cust-7"), "signature": signature}
    assert_problem(store.post("widget_member", me), 401)
    assert store.post("widget_redeem", {**me, "reward_id": 1}).status_code in (400, 401)


def test_a_signature_from_the_future_is_refused(widget, store, alice_api):
    earn(alice_api, "cust-7", 10)
    assert store.post("widget_member", signed(widget, "cust-7", age=-120)).status_code == 200
    assert_problem(store.post("widget_member", signed(widget, "cust-7", age=-3600)), 401)


@pytest.mark.parametrize("key", ["pk_%00abc", "pk_" + "a" * 60, "pk_é", "pk_a.b"])
def test_odd_keys_are_404_never_a_500(key):
    assert Client().get(f"/widget/v1/{key}/config").status_code == 404


def test_preflights_dont_spend_the_sign_up_quota(store, alice_brand):
    cache.clear()
    for _ in range(12):
        preflight = store.client.options(store.url("widget_subscribe"), headers=store.headers)
        assert preflight.status_code == 204
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    body = {"phone": "+12125550170", "consent": True, "disclosure_version": version}
    assert store.post("widget_subscribe", body).status_code == 202
