"""An opt-out by text is written in one statement (inbound.opt_out_receive). It must leave
exactly the rows the general path (inbound_receive_general: the subscriber services and
message_create) leaves: each case runs both ways from the same state, each in a savepoint that
is rolled back, and every row of the brand is compared."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg2
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyaltysms.queues import Queue
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import (
    ConsentRecord,
    InboundMessage,
    MessagingSettings,
    OutboundMessage,
    ShortLink,
    Subscriber,
)
from messaging.services.inbound import inbound_receive, inbound_receive_general
from messaging.services.outbound import WAKE_INTERVAL, dispatch_soon
from messaging.services.setup import (
    messaging_changed,
    messaging_settings_get,
    messaging_settings_update,
)
from programs.models import Member
from programs.services.members import member_upsert

from .conftest import Phone

# The texts' time, before any run: a time auto_now set stands out from it.
NOW = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
TABLES = (Member, Subscriber, InboundMessage, ConsentRecord, OutboundMessage, ShortLink)
# Sources whose dedupe key and reference name the consent record the text confirms.
CONFIRMATIONS = {"opt_out", "opt_in", "opt_in_request"}


def written(tenant, since: datetime) -> dict[str, list[dict]]:
    """Every row of the brand's SMS tables and members, as values, with each id replaced by
    its rank in its table, so two runs that wrote the same rows compare equal whatever ids
    the sequences gave them; a time that auto_now(_add) set at `since` or later is the moment
    it was written, which no two runs share."""
    with tenant_scope(tenant):
        rows = {model: list(model.objects.order_by("id").values()) for model in TABLES}
    rank = {
        model: {row["id"]: f"{model.__name__}#{n}" for n, row in enumerate(rows[model])}
        for model in TABLES
    }
    consent = {str(pk): name for pk, name in rank[ConsentRecord].items()}
    subscriber = {str(pk): name for pk, name in rank[Subscriber].items()}
    for model in TABLES:
        stamped = [
            f.attname
            for f in model._meta.concrete_fields
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        for row in rows[model]:
            row["id"] = rank[model][row["id"]]
            if "subscriber_id" in row:
                row["subscriber_id"] = rank[Subscriber][row["subscriber_id"]]
            if model is Subscriber and row["member_id"] is not None:
                row["member_id"] = rank[Member][row["member_id"]]
            for name in stamped:
                if row[name] >= since:
                    row[name] = "when written"
    for row in rows[OutboundMessage]:
        source, subscriber_pk, ref = row["dedupe_key"].split(":", 2)
        if source in CONFIRMATIONS:
            ref = row["source_ref"] = consent[ref]
        row["dedupe_key"] = f"{source}:{subscriber[subscriber_pk]}:{ref}"
    return {model.__name__: rows[model] for model in TABLES}


def both_ways(phone: Phone, body: str, sid: str) -> tuple[dict, dict, int]:
    """The text handled by the general path, then (from the same state) by inbound_receive:
    the rows after each, and how many statements inbound_receive took."""
    tenant = phone.sender.tenant
    params = phone.params(body, sid)
    outcomes = []
    statements = 0
    since = timezone.now()
    for handle in (inbound_receive_general, inbound_receive):
        with transaction.atomic():
            with CaptureQueriesContext(connection) as queries:
                handle(sender=phone.sender, params=params, now=NOW)
            outcomes.append(written(tenant, since))
            # PREPARE: once per database connection.
            statements = sum(not q["sql"].startswith("PREPARE") for q in queries)
            transaction.set_rollback(True)
    general, fast = outcomes
    return general, fast, statements


def member_with(phone: Phone, external_id: str = "cust-1") -> Member:
    return member_upsert(
        tenant=phone.sender.tenant, external_id=external_id, now=NOW, phone=phone.number
    )


@pytest.fixture(autouse=True)
def settings_cached(alice_sender):
    # Read once before the savepoints, as every request after the brand's first does.
    messaging_settings_get(alice_sender.tenant)


def test_stop_from_a_subscribed_member_writes_what_the_general_path_writes(phone):
    member_with(phone)
    phone.text("JOIN")
    phone.text("Y")
    general, fast, statements = both_ways(phone, "STOP", "SM" + "1" * 32)
    assert statements == 1
    assert fast == general
    # What both wrote, spelled out once.
    (subscriber,) = fast["Subscriber"]
    assert (subscriber["status"], subscriber["unsubscribed_at"]) == ("unsubscribed", NOW)
    assert subscriber["last_inbound_at"] == subscriber["last_message_at"] == NOW
    assert subscriber["pending_since"] is None
    assert fast["Member"][0]["sms_status"] == "unsubscribed"
    record = fast["ConsentRecord"][-1]
    assert (record["action"], record["keyword"], record["inbound_sid"]) == (
        "opt_out",
        "STOP",
        "SM" + "1" * 32,
    )
    reply = fast["OutboundMessage"][-1]
    assert reply["body"] == record["confirmation_text"]
    assert (reply["source"], reply["kind"], reply["status"]) == (
        "opt_out",
        "transactional",
        "queued",
    )
    assert reply["dedupe_key"] == f"opt_out:Subscriber#0:{record['id']}"


def test_stop_from_an_unknown_number_writes_what_the_general_path_writes(phone):
    general, fast, statements = both_ways(phone, "stop", "SM" + "2" * 32)
    assert statements == 1
    assert fast == general
    (subscriber,) = fast["Subscriber"]
    assert (subscriber["status"], subscriber["source"], subscriber["member_id"]) == (
        "unsubscribed",
        "keyword",
        None,
    )
    assert (subscriber["timezone"], subscriber["region"], subscriber["country"]) == (
        "America/New_York",
        "NY",
        "US",
    )
    assert len(fast["OutboundMessage"]) == 1


def test_stop_from_an_unknown_number_of_a_member_links_the_member(phone):
    member_with(phone)
    member_with(phone, "cust-2")  # the older member wins, as in subscriber_get_or_create
    general, fast, statements = both_ways(phone, "Unsubscribe", "SM" + "3" * 32)
    assert statements == 1
    assert fast == general
    assert fast["Subscriber"][0]["member_id"] == "Member#0"
    assert [m["sms_status"] for m in fast["Member"]] == ["unsubscribed", "none"]


def test_stop_links_a_member_who_joined_after_the_number_first_texted(phone):
    phone.text("JOIN")
    member_with(phone)
    general, fast, statements = both_ways(phone, "please stop texting me", "SM" + "4" * 32)
    assert statements == 1
    assert fast == general
    assert fast["Subscriber"][0]["member_id"] == "Member#0"
    assert fast["Member"][0]["sms_status"] == "unsubscribed"


def test_free_text_opt_out_while_pending_writes_what_the_general_path_writes(phone):
    phone.text("JOIN")
    general, fast, statements = both_ways(phone, "Remove me from this list", "SM" + "5" * 32)
    assert statements == 1
    assert fast == general
    assert fast["ConsentRecord"][-1]["keyword"] == "REMOVEMEFROMTHISLIST"


def test_the_confirmation_is_encoded_counted_and_priced_as_message_create_does(phone):
    tenant = phone.sender.tenant
    messaging_settings_update(
        tenant=tenant,
        changes={
            "brand_name": "Alice\u2019s \u201cB\u00e4ckerei\u201d {VIP} \u2615",
            "smart_encoding": True,
        },
    )
    # The price per segment has no service (it is ours, not the brand's to set).
    MessagingSettings.objects.unscoped().filter(tenant=tenant).update(
        price_per_segment=Decimal("0.01234")
    )
    messaging_changed(tenant)
    messaging_settings_get(tenant)
    phone.text("JOIN")
    general, fast, statements = both_ways(phone, "QUIT", "SM" + "6" * 32)
    assert statements == 1
    assert fast == general
    reply = fast["OutboundMessage"][-1]
    assert reply["body"].startswith("Alice's \"B\u00e4ckerei\" {VIP} \u2615: You're unsubscribed")
    assert fast["ConsentRecord"][-1]["confirmation_text"].startswith(
        "Alice\u2019s \u201cB\u00e4ckerei"
    )
    assert (reply["encoding"], reply["segments"]) == ("UCS-2", 2)
    assert reply["price_estimate"] == Decimal("0.02468")


def test_stop_again_is_recorded_with_no_second_confirmation(phone):
    member_with(phone)
    phone.text("JOIN")
    phone.text("Y")
    phone.text("STOP")
    before = written(phone.sender.tenant, timezone.now())
    general, fast, _ = both_ways(phone, "STOP", "SM" + "7" * 32)
    assert fast == general
    assert len(fast["InboundMessage"]) == len(before["InboundMessage"]) + 1
    assert fast["ConsentRecord"] == before["ConsentRecord"]
    assert fast["OutboundMessage"] == before["OutboundMessage"]
    assert fast["Subscriber"][0]["unsubscribed_at"] == before["Subscriber"][0]["unsubscribed_at"]
    assert fast["Subscriber"][0]["last_inbound_at"] == NOW


def test_a_repeated_message_sid_changes_nothing(phone):
    phone.text("JOIN")
    phone.text("Y")
    phone.text("STOP", sid="SM" + "8" * 32)
    before = written(phone.sender.tenant, timezone.now())
    general, fast, _ = both_ways(phone, "STOP", "SM" + "8" * 32)
    assert fast == general == before


def test_a_repeated_message_sid_of_a_number_not_yet_unsubscribed_changes_nothing(phone):
    # The text was a reply the first time; the same MessageSid now says STOP.
    phone.text("JOIN")
    phone.text("hello", sid="SM" + "9" * 32)
    before = written(phone.sender.tenant, timezone.now())
    general, fast, _ = both_ways(phone, "STOP", "SM" + "9" * 32)
    assert fast == general == before


def test_the_opt_out_is_returned_as_the_recorded_inbound_text(phone):
    message = inbound_receive(
        sender=phone.sender, params=phone.params("STOP", "SM" + "a" * 32), now=NOW
    )
    with tenant_scope(phone.sender.tenant):
        stored = InboundMessage.objects.get()
    assert message.pk == stored.pk
    assert message.subscriber_id == stored.subscriber_id
    assert (message.kind, message.carrier_sid, message.created_at) == (
        "opt_out",
        "SM" + "a" * 32,
        NOW,
    )


def test_another_brands_number_and_member_are_untouched(phone, charlie_sender, charlie_brand):
    # charlie has the same number as a subscriber and as a member.
    other = Phone(phone.number, charlie_sender, Client())
    member_upsert(tenant=charlie_brand.tenant, external_id="c1", now=NOW, phone=phone.number)
    other.text("JOIN")
    other.text("Y")
    theirs = written(charlie_brand.tenant, timezone.now())
    phone.text("STOP")
    assert written(charlie_brand.tenant, timezone.now()) == theirs
    with tenant_scope(phone.sender.tenant):
        assert Subscriber.objects.get().status == "unsubscribed"


@pytest.mark.django_db(transaction=True)
def test_stop_waits_for_a_send_holding_the_subscriber(alice_brand, phone):
    """The dispatcher holds the subscriber row FOR SHARE across each carrier call; the STOP
    is acknowledged only after that send, so the send can't follow the acknowledgement."""
    phone.text("JOIN")
    phone.text("Y")
    with tenant_scope(alice_brand.tenant):
        subscriber_id = Subscriber.objects.get().pk
    db = django_settings.DATABASES["default"]
    sending = psycopg2.connect(
        dbname=connection.settings_dict["NAME"],
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
    )
    answered = threading.Event()

    def stop():
        try:
            phone.text("STOP")
            answered.set()
        finally:
            connection.close()

    try:
        with sending.cursor() as cursor:
            cursor.execute(
                "SELECT status FROM messaging_subscriber WHERE id = %s FOR SHARE", [subscriber_id]
            )
            thread = threading.Thread(target=stop)
            thread.start()
            time.sleep(1.0)
            assert not answered.is_set()  # waiting for the send's lock
            cursor.execute("SELECT status FROM messaging_subscriber WHERE id = %s", [subscriber_id])
            assert cursor.fetchone() == ("subscribed",)
        sending.commit()  # the send is over
        thread.join(timeout=10)
        assert answered.is_set()
    finally:
        sending.close()
    with tenant_scope(alice_brand.tenant):
        assert Subscriber.objects.get().status == "unsubscribed"
        assert OutboundMessage.objects.filter(source="opt_out").count() == 1


def our_wakeups() -> list[bytes]:
    """The dispatcher wake-ups this process has in the broker (no worker takes them here)."""
    # The broker is REDIS_URL's Redis (kombu spells a socket differently from redis-py).
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    origin = f"gen{os.getpid()}@{socket.gethostname()}"
    found = []
    for raw in client.lrange(Queue.DISPATCH.value, 0, -1):
        headers = json.loads(raw)["headers"]
        if (
            headers.get("origin") == origin
            and headers.get("task") == "messaging.tasks.dispatch_due"
        ):
            found.append(raw)
    return found


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_queued_texts_wakes_the_dispatcher_at_once_and_once_more():
    time.sleep(WAKE_INTERVAL + 0.1)  # an earlier test's wake-up is sent and long enough ago
    before = our_wakeups()
    began = time.monotonic()
    for _ in range(50):  # fifty transactions that each queued a text
        with transaction.atomic():
            dispatch_soon()
    assert time.monotonic() - began < WAKE_INTERVAL  # (else the test proves nothing)
    assert len(our_wakeups()) == len(before) + 1  # the first at once
    time.sleep(WAKE_INTERVAL + 0.3)
    # One more for the texts queued after the first wake-up, at the interval's end.
    after = our_wakeups()
    assert len(after) == len(before) + 2
    # The broker is REDIS_URL's Redis (kombu spells a socket differently from redis-py).
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for raw in after[len(before) :]:
        client.lrem(Queue.DISPATCH.value, 1, raw)
