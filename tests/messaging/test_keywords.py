"""compliance.md, Keywords: every family and its variants, free-text opt-outs, double opt-in,
one confirmation, the HELP reply — through the real signed inbound webhook."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyaltysms.tenancy.context import tenant_scope
from messaging.keywords import Intent, classify
from messaging.models import ConsentRecord, InboundMessage, MessageKind, Subscriber
from messaging.services.dispatch import dispatch_due
from programs.models import Member
from programs.services.members import member_upsert
from programs.services.program import program_get

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT"]
OPT_IN = ["START", "YES", "UNSTOP"]
HELP = ["HELP", "INFO"]


def variants(keyword: str) -> list[str]:
    """The same keyword as people type it: any case, padded, punctuated, spaced out."""
    return [
        keyword,
        keyword.lower(),
        keyword.title(),
        f"  {keyword}  ",
        f"{keyword}.",
        f"{keyword}!!",
        f"'{keyword.lower()}'",
        " ".join(keyword.replace(" ", "")),
        f"\n{keyword}\n",
        keyword.replace(" ", "-"),
    ]


@pytest.mark.parametrize("keyword", OPT_OUT)
def test_every_opt_out_keyword_and_variant_is_an_opt_out(keyword):
    for text in variants(keyword):
        assert classify(text) == Intent.OPT_OUT, text


@pytest.mark.parametrize("keyword", OPT_IN)
def test_every_opt_in_keyword_and_variant_is_an_opt_in(keyword):
    for text in variants(keyword):
        assert classify(text) == Intent.OPT_IN, text


@pytest.mark.parametrize("keyword", HELP)
def test_every_help_keyword_and_variant_is_help(keyword):
    for text in variants(keyword):
        assert classify(text) == Intent.HELP, text


@pytest.mark.parametrize("text", ["Y", "y", "Yes", " YES! ", "y."])
def test_y_and_yes_confirm_only_while_an_opt_in_is_pending(text):
    assert classify(text, pending=True) == Intent.CONFIRM
    assert classify(text) in (Intent.OPT_IN, Intent.REPLY)


def test_the_brands_own_keywords_join_in_any_case():
    for text in ["vip", "VIP!", " V I P "]:
        assert classify(text, join_keywords=["VIP", "JOIN"]) == Intent.JOIN


@pytest.mark.parametrize(
    "text",
    [
        "stop texting me",
        "Please STOP sending these",
        "unsubscribe me please",
        "pls unsubscribe",
        "Remove me from this list",
        "take me off your list",
        "no more texts!",
        "No more messages please",
        "don't text me again",
        "Do not contact me",
        "stop the texts",
        "I want to opt out",
        "opt me out",
    ],
)
def test_free_text_that_clearly_asks_to_stop_is_an_opt_out(text):
    assert classify(text) == Intent.OPT_OUT


@pytest.mark.parametrize(
    "text",
    ["I can't stop eating your cookies", "Wrong number", "who is this?", "is this spam"],
)
def test_text_that_only_might_be_an_opt_out_is_flagged(text):
    assert classify(text) == Intent.AMBIGUOUS


@pytest.mark.parametrize(
    "text", ["Thanks! See you Saturday", "stopping by later", "What time do you open?", "ok"]
)
def test_ordinary_replies_are_replies(text):
    assert classify(text) == Intent.REPLY


@given(st.sampled_from(OPT_OUT), st.text(alphabet=" .,!?-'\"\n\t", max_size=6), st.booleans())
def test_opt_out_survives_any_padding_and_case(keyword, padding, lower):
    word = keyword.lower() if lower else keyword
    assert classify(padding + word + padding[::-1]) == Intent.OPT_OUT


# Texts near every rule: keywords, their look-alikes, confirmations and free text.
NEAR_RULES = st.one_of(
    st.sampled_from(OPT_OUT + OPT_IN + HELP + ["Y", "y.", "YES", "vip", "JOIN"]),
    st.sampled_from(["stop texting me", "no more texts", "remove me", "yes stop", "y stop"]),
    st.text(alphabet="stopyesSTOPYES .!-'", max_size=12),
    st.text(max_size=30),
)


@given(NEAR_RULES, st.lists(st.sampled_from(["VIP", "JOIN", "Y", "STOPNOW"]), max_size=2))
def test_a_pending_opt_in_never_decides_whether_a_text_is_an_opt_out(text, join_keywords):
    # The webhook classifies an opt-out before reading the subscriber (one statement for a
    # STOP): that is only right if being pending can't make or unmake one.
    pending = classify(text, join_keywords=join_keywords, pending=True)
    not_pending = classify(text, join_keywords=join_keywords, pending=False)
    assert (pending == Intent.OPT_OUT) == (not_pending == Intent.OPT_OUT)


def subscriber_of(phone) -> Subscriber:
    with tenant_scope(phone.sender.tenant):
        return Subscriber.objects.get(phone=phone.number)


def consent_actions(phone) -> list[str]:
    with tenant_scope(phone.sender.tenant):
        return list(
            ConsentRecord.objects.filter(subscriber__phone=phone.number)
            .order_by("id")
            .values_list("action", flat=True)
        )


def test_join_keyword_starts_double_opt_in_and_y_confirms_with_one_confirmation(phone):
    phone.text("join")
    assert subscriber_of(phone).status == "pending"
    assert len(phone.received()) == 1
    assert "Reply Y to confirm" in phone.received()[0]

    phone.text("Y")
    subscriber = subscriber_of(phone)
    assert subscriber.status == "subscribed"
    texts = phone.received()
    assert len(texts) == 2
    confirmation = texts[1]
    # compliance.md, the opt-in confirmation's required contents.
    assert confirmation.startswith("Alice's Bakery:")
    assert "Recurring automated marketing msgs" in confirmation
    assert "Msg & data rates may apply" in confirmation
    assert "Reply HELP for help, STOP to cancel" in confirmation
    assert consent_actions(phone) == ["opt_in_requested", "opt_in_confirmed"]

    # A second "Y" (or YES) changes nothing and texts nothing.
    phone.text("YES")
    assert len(phone.received()) == 2
    assert subscriber_of(phone).status == "subscribed"


def test_confirmation_links_terms_and_privacy_when_configured(phone):
    from messaging.services.setup import messaging_settings_get

    settings = messaging_settings_get(phone.sender.tenant)
    settings.terms_url = "https://bakery.test/terms"
    settings.privacy_url = "https://bakery.test/privacy"
    settings.save()
    phone.text("JOIN")
    phone.text("y")
    assert phone.received()[-1].endswith(
        "Terms: https://bakery.test/terms Privacy: https://bakery.test/privacy"
    )


def test_y_without_a_pending_opt_in_is_only_a_reply(phone):
    phone.text("Y")
    assert subscriber_of(phone).status == "none"
    assert phone.received() == []


@pytest.mark.parametrize("keyword", OPT_OUT)
def test_each_opt_out_keyword_unsubscribes_with_exactly_one_confirmation(phone, keyword):
    phone.text("JOIN")
    phone.text("y")
    phone.text(keyword.lower() + "!")
    assert subscriber_of(phone).status == "unsubscribed"
    texts = phone.received()
    assert texts[-1] == (
        "Alice's Bakery: You're unsubscribed and will get no more messages. "
        "Reply START to resubscribe."
    )
    # A second STOP: still unsubscribed, no second confirmation (FCC 12-143).
    phone.text("STOP")
    assert phone.received() == texts
    assert consent_actions(phone).count("opt_out") == 1


def test_free_text_opt_out_unsubscribes(phone):
    phone.text("JOIN")
    phone.text("y")
    phone.text("Please stop texting me")
    assert subscriber_of(phone).status == "unsubscribed"
    with tenant_scope(phone.sender.tenant):
        record = ConsentRecord.objects.filter(action="opt_out").get()
    assert record.message_body == "Please stop texting me"


def test_ambiguous_text_lands_in_the_inbox_flagged_and_changes_nothing(phone):
    phone.text("JOIN")
    phone.text("y")
    phone.text("wrong number")
    subscriber = subscriber_of(phone)
    assert subscriber.status == "subscribed"
    assert subscriber.needs_attention is True
    assert subscriber.unread_count == 1


@pytest.mark.parametrize("keyword", OPT_IN)
def test_start_after_stop_resubscribes_with_the_opt_in_confirmation(phone, keyword):
    phone.text("JOIN")
    phone.text("y")
    phone.text("STOP")
    phone.text(keyword.lower())
    assert subscriber_of(phone).status == "subscribed"
    assert "You're subscribed!" in phone.received()[-1]
    assert consent_actions(phone)[-1] == "opt_in"


def test_start_from_a_new_number_asks_for_confirmation(phone):
    phone.text("START")
    assert subscriber_of(phone).status == "pending"
    assert "Reply Y to confirm" in phone.received()[-1]


@pytest.mark.parametrize("keyword", HELP)
def test_help_gets_the_help_text_every_time_and_changes_nothing(phone, keyword):
    phone.text(keyword)
    phone.text(keyword.lower())
    expected = (
        "Alice's Bakery: Reply STOP to cancel. For help, contact support. Reply STOP to cancel. "
        "Msg&data rates may apply."
    )
    assert phone.received() == [expected, expected]
    assert subscriber_of(phone).status == "none"
    assert consent_actions(phone) == []


def test_help_is_answered_even_after_stop(phone):
    phone.text("JOIN")
    phone.text("y")
    assert dispatch_due().sent == 2
    phone.text("STOP")
    phone.text("HELP")
    report = dispatch_due()
    assert (report.sent, report.suppressed) == (2, 0)


def test_keyword_texts_are_transactional(phone):
    phone.text("JOIN")
    phone.text("y")
    phone.text("HELP")
    phone.text("STOP")
    from messaging.models import OutboundMessage

    with tenant_scope(phone.sender.tenant):
        kinds = set(OutboundMessage.objects.values_list("kind", flat=True))
    assert kinds == {MessageKind.TRANSACTIONAL}


def test_inbound_texts_are_kept_once_each(phone):
    phone.text("Hello there", sid="SM" + "a" * 32)
    phone.text("Hello there", sid="SM" + "a" * 32)  # Twilio retried the webhook
    with tenant_scope(phone.sender.tenant):
        assert InboundMessage.objects.count() == 1
        assert Subscriber.objects.get().unread_count == 1


def test_subscribing_pays_the_loyalty_bonus_once(alice_brand, phone):
    from django.utils import timezone

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        program = program_get(tenant)
        program.sms_bonus = 100
        program.save()
    member_upsert(tenant=tenant, external_id="cust-1", now=timezone.now(), phone=phone.number)
    phone.text("JOIN")
    phone.text("Y")
    phone.text("STOP")
    phone.text("START")
    with tenant_scope(tenant):
        member = Member.objects.get(external_id="cust-1")
        assert member.sms_status == "subscribed"
        assert member.points_balance == 100
        assert subscriber_of(phone).member_id == member.pk


def test_keyword_consent_keeps_the_brands_disclosure_and_the_texts(phone):
    phone.text("JOIN")
    phone.text("Y")
    with tenant_scope(phone.sender.tenant):
        requested, confirmed = ConsentRecord.objects.order_by("id")
    for record in (requested, confirmed):
        assert record.source == "keyword"
        assert record.disclosure_text.startswith("By subscribing you agree")
        assert record.disclosure_version == "1"
    assert (requested.keyword, requested.message_body) == ("JOIN", "JOIN")
    assert "Reply Y to confirm" in requested.confirmation_text
    assert confirmed.keyword == "Y" and "You're subscribed!" in confirmed.confirmation_text


def test_an_automatic_answer_follows_the_text_it_answers(phone):
    from messaging.selectors import conversation

    phone.text("HELP")
    phone.text("JOIN")
    with tenant_scope(phone.sender.tenant):
        thread = conversation(Subscriber.objects.get())
    assert [direction for direction, _, _ in thread] == ["in", "out", "in", "out"]
