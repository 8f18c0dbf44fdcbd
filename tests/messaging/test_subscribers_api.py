"""api.md, SMS subscribers and Messages: the storefront's opt-in paths and the preview."""

from __future__ import annotations

import pytest
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentRecord, OutboundMessage, Subscriber
from programs.services.members import member_upsert
from programs.services.program import program_get

from ..programs.conftest import assert_problem

DISCLOSURE = "By checking this box you agree to receive recurring automated marketing texts."


def opt_in(api, **fields):
    body = {
        "phone": "(212) 555-0101",
        "source": "web_form",
        "consent_text": DISCLOSURE,
        "consent_url": "https://bakery.test/join",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        **fields,
    }
    return api.post("subscribers", body)


def test_web_form_opt_in_is_pending_until_confirmed_by_text(alice_api, alice_brand, phone):
    response = opt_in(alice_api)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["phone"] == "+12125550101"
    assert body["status"] == "pending"
    assert body["timezone"] == "America/New_York" and body["region"] == "NY"
    (record,) = body["consent"]
    assert record["action"] == "opt_in_requested"
    assert record["disclosure_text"] == DISCLOSURE
    assert record["page_url"] == "https://bakery.test/join"
    assert record["ip"] == "203.0.113.9" and record["user_agent"] == "Mozilla/5.0"
    assert "Reply Y to confirm" in record["confirmation_text"]
    assert phone.received() == [record["confirmation_text"]]

    phone.text("Y")
    body = alice_api.get("subscribers/%2B12125550101").json()
    assert body["status"] == "subscribed"
    assert [r["action"] for r in body["consent"]] == ["opt_in_requested", "opt_in_confirmed"]
    assert body["consent"][1]["message_body"] == "Y"


def test_checkout_consent_without_double_opt_in_subscribes_at_once(alice_api, phone):
    response = opt_in(alice_api, source="checkout", double_opt_in=False)
    assert response.status_code == 201
    assert response.json()["status"] == "subscribed"
    assert "You're subscribed!" in phone.received()[0]


def test_opting_in_again_is_200_and_sends_nothing_more(alice_api, phone):
    opt_in(alice_api, double_opt_in=False)
    response = opt_in(alice_api)
    assert response.status_code == 200
    assert response.json()["status"] == "subscribed"
    assert len(phone.received()) == 1


def test_delete_unsubscribes_with_evidence_and_no_text(alice_api, phone):
    opt_in(alice_api, double_opt_in=False)
    response = alice_api.delete("subscribers/%2B12125550101")
    assert response.status_code == 204
    body = alice_api.get("subscribers/+1 212 555 0101").json()
    assert body["status"] == "unsubscribed"
    assert body["consent"][-1]["action"] == "opt_out"
    assert body["consent"][-1]["source"] == "api"
    assert len(phone.received()) == 1  # the opt-in confirmation only


def test_opt_in_links_the_member_and_pays_the_bonus_once(alice_api, alice_brand, phone):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        program = program_get(tenant)
        program.sms_bonus = 50
        program.save()
    member_upsert(tenant=tenant, external_id="cust-9", now=timezone.now())
    response = opt_in(alice_api, member="cust-9", double_opt_in=False)
    assert response.json()["member"] == "cust-9"
    member = alice_api.get("members/cust-9").json()
    assert member["sms_status"] == "subscribed"
    assert member["points_balance"] == 50
    alice_api.delete("subscribers/%2B12125550101")
    opt_in(alice_api, member="cust-9", double_opt_in=False)
    assert alice_api.get("members/cust-9").json()["points_balance"] == 50


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"phone": "not a phone"}, "phone"),
        ({"phone": "+1 555"}, "phone"),
        ({"source": "telepathy"}, "source"),
        ({"consent_text": ""}, "consent_text"),
        ({"consent_url": "not a url"}, "consent_url"),
        ({"ip": "999.1.1.1"}, "ip"),
    ],
)
def test_bad_opt_ins_are_field_errors_with_nothing_written(alice_api, alice_brand, fields, field):
    assert_problem(opt_in(alice_api, **fields), 400, field)
    with tenant_scope(alice_brand.tenant):
        assert not Subscriber.objects.exists()


def test_unknown_member_is_404(alice_api):
    assert opt_in(alice_api, member="nobody").status_code == 404


def test_a_number_that_isnt_subscribed_is_404(alice_api):
    assert alice_api.get("subscribers/%2B12125550199").status_code == 404
    assert alice_api.delete("subscribers/%2B12125550199").status_code == 404
    assert alice_api.get("subscribers/garbage").status_code == 404


def test_list_filters_by_status(alice_api, phone):
    opt_in(alice_api, double_opt_in=False)
    opt_in(alice_api, phone="+12125550102")
    pending = alice_api.get("subscribers?status=pending").json()
    assert [s["phone"] for s in pending["results"]] == ["+12125550102"]
    assert_problem(alice_api.get("subscribers?status=maybe"), 400, "status")


def test_consent_records_cannot_be_changed(alice_api, alice_brand):
    from django.db import IntegrityError, transaction

    opt_in(alice_api)
    with tenant_scope(alice_brand.tenant):
        with pytest.raises(IntegrityError), transaction.atomic():
            ConsentRecord.objects.update(disclosure_text="something else")
        assert ConsentRecord.objects.get().disclosure_text == DISCLOSURE


def test_another_brand_cannot_see_or_change_the_number(alice_api, charlie_api, alice_brand):
    opt_in(alice_api, double_opt_in=False)
    assert charlie_api.get("subscribers/%2B12125550101").status_code == 404
    assert charlie_api.delete("subscribers/%2B12125550101").status_code == 404
    with tenant_scope(alice_brand.tenant):
        assert Subscriber.objects.get().status == "subscribed"


# --- preview ------------------------------------------------------------------------------


def test_preview_personalizes_for_a_member_and_counts_segments(alice_api, alice_brand):
    member_upsert(tenant=alice_brand.tenant, external_id="m1", now=timezone.now(), first_name="Zoë")
    response = alice_api.post(
        "messages/preview",
        {"body": "Hi {first_name|there}, you have {points_balance} {points_name}!", "member": "m1"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["text"] == "Hi Zoë, you have 0 points!\nReply STOP to opt out"
    assert body["encoding"] == "UCS-2"  # ë is not in GSM-7
    assert body["segments"] == 1
    assert body["unknown_tags"] == []


def test_preview_without_a_member_uses_samples_and_fallbacks(alice_api):
    body = alice_api.post(
        "messages/preview", {"body": "Hey {first_name|friend}! {brand} misses you."}
    ).json()
    assert body["text"].startswith("Hey Jamie! Alice's Bakery misses you.")
    assert body["encoding"] == "GSM-7"


def test_preview_reports_unknown_tags(alice_api):
    body = alice_api.post("messages/preview", {"body": "Hi {frist_name}, {points}!"}).json()
    assert body["unknown_tags"] == ["{frist_name}", "{points}"]


def test_preview_shortens_links_and_counts_them(alice_api):
    body = alice_api.post(
        "messages/preview", {"body": "Shop now: https://bakery.test/sale?utm=sms"}
    ).json()
    assert "https://bakery.test" not in body["text"]
    assert "/l/" in body["text"]


def test_preview_smart_encoding_keeps_curly_quotes_in_gsm7(alice_api):
    text = "It\u2019s \u201cdouble points\u201d day \u2014 don\u2019t miss it\u2026"
    plain = alice_api.post("messages/preview", {"body": text}).json()
    smart = alice_api.post("messages/preview", {"body": text, "smart_encoding": True}).json()
    assert plain["encoding"] == "UCS-2" and smart["encoding"] == "GSM-7"
    assert "It's \"double points\" day - don't miss it..." in smart["text"]


def test_transactional_preview_has_no_footer(alice_api):
    body = alice_api.post(
        "messages/preview", {"body": "Your code is RWD-1", "kind": "transactional"}
    ).json()
    assert body["text"] == "Your code is RWD-1"


def test_preview_of_an_empty_body_is_a_field_error(alice_api):
    assert_problem(alice_api.post("messages/preview", {"body": ""}), 400, "body")


def test_marketing_texts_carry_personalized_tracked_links(alice_brand, alice_sender):
    from messaging.models import ShortLink
    from messaging.services.outbound import message_create
    from messaging.services.subscribers import Evidence, subscriber_opt_in

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        subscribers = [
            subscriber_opt_in(
                tenant=tenant,
                phone=number,
                evidence=Evidence(source="import"),
                now=timezone.now(),
                double_opt_in=False,
                send_confirmation=False,
            )
            for number in ("+12125550101", "+12125550102")
        ]
        for subscriber in subscribers:
            message_create(
                tenant=tenant,
                subscriber=subscriber,
                template="Sale! {link:https://bakery.test/sale} or https://bakery.test/menu.",
                kind="marketing",
                source="campaign",
                dedupe_key=f"c1:{subscriber.pk}",
                now=timezone.now(),
            )
        links = list(ShortLink.objects.order_by("id"))
        bodies = list(OutboundMessage.objects.order_by("id").values_list("body", flat=True))
    assert len(links) == 4
    assert {link.target for link in links} == {
        "https://bakery.test/sale",
        "https://bakery.test/menu",
    }
    assert len({link.code for link in links}) == 4  # one per recipient and link
    for body in bodies:
        assert "bakery.test" not in body
        assert body.endswith(".\nReply STOP to opt out")  # the trailing dot stays outside


def test_a_given_time_zone_wins_over_the_numbers(alice_api):
    body = opt_in(alice_api, timezone="America/Los_Angeles").json()
    assert body["timezone"] == "America/Los_Angeles"
    assert_problem(
        opt_in(alice_api, phone="+12125550102", timezone="Mars/Olympus"), 400, "timezone"
    )
