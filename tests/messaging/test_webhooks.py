"""Carrier webhooks: forged or replayed requests are refused with nothing written; the tenant
comes from the receiving number; receipts are monotonic and idempotent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import InboundMessage, MessageKind, OutboundMessage, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.outbound import message_create
from messaging.services.subscribers import Evidence, subscriber_opt_in

from .conftest import BASE, Phone, signed_post


def nothing_written(tenant) -> bool:
    with tenant_scope(tenant):
        return not InboundMessage.objects.exists() and not Subscriber.objects.exists()


def test_a_signed_inbound_text_is_accepted(phone):
    phone.text("Hello")
    with tenant_scope(phone.sender.tenant):
        assert InboundMessage.objects.get().body == "Hello"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda p, params: ("wrong-token-" + "0" * 20, params, None), id="wrong token"),
        pytest.param(
            lambda p, params: (p.token, {**params, "Body": "STOP"}, None), id="changed param"
        ),
        pytest.param(
            lambda p, params: (p.token, params, "http://evil.test/webhooks/twilio/inbound"),
            id="changed url",
        ),
        pytest.param(lambda p, params: (p.token, {**params, "Extra": "1"}, None), id="added param"),
    ],
)
def test_forged_inbound_requests_are_refused_with_no_write(phone, forge):
    params = phone.params("JOIN")
    token, sent, url = forge(phone, params)
    # Signed over `params` (or with the wrong token / URL), but `sent` is what arrives.
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(token).compute_signature(
        url or BASE + "/webhooks/twilio/inbound", params
    )
    response = Client().post(
        "/webhooks/twilio/inbound", sent, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    assert nothing_written(phone.sender.tenant)


def test_unsigned_inbound_is_refused(phone):
    response = Client().post("/webhooks/twilio/inbound", phone.params("STOP"))
    assert response.status_code == 403
    assert nothing_written(phone.sender.tenant)


def test_a_number_nobody_owns_is_refused(phone):
    params = {**phone.params("JOIN"), "To": "+12025550199"}
    response = signed_post(Client(), "/webhooks/twilio/inbound", params, phone.token)
    assert response.status_code == 403


def test_another_brands_token_cannot_sign_for_this_number(phone, charlie_sender):
    from messaging.crypto import decrypt

    charlie_token = decrypt(charlie_sender.auth_token_encrypted)
    response = signed_post(
        Client(), "/webhooks/twilio/inbound", phone.params("STOP"), charlie_token
    )
    assert response.status_code == 403
    assert nothing_written(phone.sender.tenant)


def test_the_tenant_is_the_one_owning_the_receiving_number(phone, charlie_sender):
    charlie_phone = Phone(phone.number, charlie_sender, Client())
    charlie_phone.text("JOIN")
    with tenant_scope(charlie_sender.tenant):
        assert Subscriber.objects.get().status == "pending"
    assert nothing_written(phone.sender.tenant)


def test_a_replayed_request_is_ignored(phone):
    params = phone.params("JOIN")
    for _ in range(3):
        response = signed_post(Client(), "/webhooks/twilio/inbound", params, phone.token)
        assert response.status_code == 200
    assert len(phone.received()) == 1


@override_settings(PUBLIC_BASE_URL="https://sms.example.com")
def test_signatures_are_checked_against_the_public_url(phone):
    params = phone.params("Hello")
    path = "/webhooks/twilio/inbound"
    assert signed_post(Client(), path, params, phone.token).status_code == 403
    response = signed_post(
        Client(), path, params, phone.token, url="https://sms.example.com" + path
    )
    assert response.status_code == 200


def test_get_is_not_allowed(phone):
    assert Client().get("/webhooks/twilio/inbound").status_code == 405


# --- delivery receipts ---------------------------------------------------------------------


@pytest.fixture
def sent_message(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    now = timezone.now()
    alice_sender.mps = 1000
    alice_sender.save()
    with tenant_scope(tenant):
        subscriber = subscriber_opt_in(
            tenant=tenant,
            phone="+12125550101",
            evidence=Evidence(source="import"),
            now=now,
            double_opt_in=False,
            send_confirmation=False,
        )
        message, _ = message_create(
            tenant=tenant,
            subscriber=subscriber,
            template="Your code: RWD-1",
            kind=MessageKind.TRANSACTIONAL,
            source="reward",
            dedupe_key="reward:1",
            now=now,
        )
    assert dispatch_due().sent == 1
    message.refresh_from_db()
    return message


def receipt(message, status, *, error_code=None, sid=None, token=None, client=None):
    from messaging.crypto import decrypt

    params = {
        "MessageSid": sid or message.carrier_sid,
        "SmsSid": sid or message.carrier_sid,
        "AccountSid": message.sender.account_sid,
        "From": message.sender.phone_number,
        "To": message.to,
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = error_code
    path = f"/webhooks/twilio/status?m={message.pk}"
    return signed_post(
        client or Client(), path, params, token or decrypt(message.sender.auth_token_encrypted)
    )


def test_receipts_move_a_text_forward_only(sent_message):
    assert sent_message.status == "sent"
    assert receipt(sent_message, "delivered").status_code == 200
    sent_message.refresh_from_db()
    assert sent_message.status == "delivered"
    delivered_at = sent_message.delivered_at
    # Late and duplicate receipts change nothing.
    for status in ["sent", "queued", "delivered", "undelivered", "failed"]:
        assert receipt(sent_message, status).status_code == 200
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.delivered_at) == ("delivered", delivered_at)


def test_an_undelivered_receipt_keeps_its_error_code(sent_message):
    receipt(sent_message, "undelivered", error_code="30003")
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.error_code) == ("undelivered", "30003")
    assert sent_message.finished_at is not None


def test_a_carrier_opt_out_in_a_receipt_unsubscribes(sent_message):
    receipt(sent_message, "failed", error_code="21610")
    with tenant_scope(sent_message.tenant):
        subscriber = Subscriber.objects.get()
    assert subscriber.status == "unsubscribed"


def test_a_forged_receipt_is_refused_with_no_write(sent_message):
    response = receipt(sent_message, "failed", token="f" * 32)
    assert response.status_code == 403
    sent_message.refresh_from_db()
    assert sent_message.status == "sent"


def test_a_receipt_naming_another_sid_is_ignored(sent_message):
    receipt(sent_message, "delivered", sid="SM" + "9" * 32)
    sent_message.refresh_from_db()
    assert sent_message.status == "sent"


def test_a_receipt_for_an_unknown_text_is_answered_and_ignored(sent_message, caplog):
    from messaging.crypto import decrypt

    params = {
        "MessageSid": "SM" + "7" * 32,
        "AccountSid": sent_message.sender.account_sid,
        "MessageStatus": "delivered",
    }
    token = decrypt(sent_message.sender.auth_token_encrypted)
    response = signed_post(Client(), "/webhooks/twilio/status", params, token)
    assert response.status_code == 200
    assert "unknown message" in caplog.text
    # Unsigned: refused.
    assert Client().post("/webhooks/twilio/status", params).status_code == 403


def test_a_receipt_settles_a_text_whose_outcome_was_unknown(sent_message):
    OutboundMessage.objects.unscoped().filter(pk=sent_message.pk).update(
        status="unknown", carrier_sid=None
    )
    receipt(sent_message, "delivered", sid="SM" + "5" * 32)
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.carrier_sid) == ("delivered", "SM" + "5" * 32)


def make_stale(
    message: OutboundMessage, *, claim: int | None = 7, marked_claim: int | None = None
) -> None:
    """The text as a dispatcher that died mid-batch leaves it: `sending` under `claim` since
    11 minutes ago, with a hand-over mark for `marked_claim` or none."""
    from messaging.models import Handover

    OutboundMessage.objects.unscoped().filter(pk=message.pk).update(
        status="sending", claim=claim, sending_at=timezone.now() - timedelta(minutes=11)
    )
    if marked_claim is not None:
        Handover.objects.create(message_id=message.pk, claim=marked_claim, at=timezone.now())


@pytest.mark.parametrize(
    ("claim", "marked_claim"), [(7, 7), (None, None)], ids=["marked", "claimed-by-old-release"]
)
def test_a_stale_text_that_may_have_left_becomes_unknown_and_is_never_sent_again(
    sent_message, claim, marked_claim
):
    from messaging.models import Handover
    from messaging.services.dispatch import sending_settle_stale

    make_stale(sent_message, claim=claim, marked_claim=marked_claim)
    assert sending_settle_stale(now=timezone.now()) == 1
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.claim) == ("unknown", None)
    assert dispatch_due(now=lambda: timezone.now() + timedelta(days=1)).claimed == 0
    assert not Handover.objects.filter(message_id=sent_message.pk).exists()


@pytest.mark.parametrize("marked_claim", [None, 6], ids=["unmarked", "marked-under-another-claim"])
def test_a_stale_text_never_handed_over_is_queued_again_and_sent_once(sent_message, marked_claim):
    from messaging.services.dispatch import sending_settle_stale

    attempts = sent_message.attempts
    make_stale(sent_message, claim=7, marked_claim=marked_claim)
    assert sending_settle_stale(now=timezone.now()) == 1
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.attempts) == ("queued", attempts - 1)
    assert sent_message.sending_at is None and sent_message.claim is None
    report = dispatch_due()
    assert (report.claimed, report.sent) == (1, 1)
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.attempts) == ("sent", attempts)


def test_a_requeued_text_meets_the_gate_again(sent_message):
    """A STOP while the text sat `sending` under a dead dispatcher: requeued, then
    suppressed by the gate — never sent to the number that opted out."""
    from messaging.services.dispatch import sending_settle_stale

    make_stale(sent_message, claim=7)
    Subscriber.objects.unscoped().filter(pk=sent_message.subscriber_id).update(
        status="unsubscribed"
    )
    assert sending_settle_stale(now=timezone.now()) == 1
    report = dispatch_due()
    assert (report.claimed, report.sent, report.suppressed) == (1, 0, 1)
    sent_message.refresh_from_db()
    assert sent_message.status == "suppressed"
