"""The SMS pages of the dashboard: subscribers and their consent evidence, the import, the
inbox, compliance settings and senders, and the phone simulator. State comes from the real
webhook (a Phone texting the brand) and the real services."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loyaltysms.models import AuditEvent
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt
from messaging.models import (
    ConsentRecord,
    InboundMessage,
    MessagingSettings,
    OutboundMessage,
    Sender,
    SenderKind,
    Subscriber,
)
from messaging.services.dispatch import dispatch_due
from messaging.services.imports import subscribers_import_csv
from messaging.services.setup import SETTINGS_FIELDS, messaging_settings_get
from messaging.services.subscribers import Evidence, subscriber_opt_in

from ..conftest import signed_in
from .conftest import Phone

DISCLOSURE = "By subscribing you agree to receive recurring automated marketing texts."


def subscriber(tenant, number: str) -> Subscriber:
    with tenant_scope(tenant):
        return Subscriber.objects.get(phone=number)


def handset(sender, number: str) -> Phone:
    return Phone(number, sender, Client())


def import_numbers(tenant, numbers: list[str], **columns) -> None:
    """Subscribe numbers through the real import, with evidence."""
    header = ["phone", "consented_at", "consent_text", *columns]
    lines = [",".join(header)]
    for number in numbers:
        lines.append(",".join([number, "2025-03-01T14:30:00-05:00", DISCLOSURE, *columns.values()]))
    report = subscribers_import_csv(
        tenant=tenant, file="\n".join(lines).encode(), now=timezone.now(), actor="test"
    )
    assert report.failed == 0, report.errors


def upload(content: bytes, name: str = "numbers.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, "text/csv")


# --- pages and roles ------------------------------------------------------------------------


def test_every_page_renders_for_the_owner(alice_brand, phone):
    phone.text("Hello there")
    client = signed_in(alice_brand.owner)
    them = subscriber(alice_brand.tenant, phone.number)
    for url in [
        reverse("subscribers"),
        reverse("subscriber_detail", args=[them.pk]),
        reverse("subscribers_import"),
        reverse("inbox"),
        reverse("inbox_conversation", args=[them.pk]),
        reverse("sms_settings"),
        reverse("sms_simulator"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert ">Subscribers</a>" in body and ">SMS settings</a>" in body, url


def test_empty_pages_say_what_to_do_next(alice_brand):
    client = signed_in(alice_brand.owner)
    subscribers = client.get(reverse("subscribers")).content.decode()
    assert "No subscribers yet" in subscribers and reverse("subscribers_import") in subscribers
    inbox = client.get(reverse("inbox")).content.decode()
    assert "No conversations yet" in inbox and reverse("sms_simulator") in inbox


def test_viewers_read_but_cannot_post_anything(alice_brand, vera, phone):
    phone.text("JOIN")
    them = subscriber(alice_brand.tenant, phone.number)
    client = signed_in(vera)
    assert client.get(reverse("subscribers")).status_code == 200
    assert client.get(reverse("subscriber_detail", args=[them.pk])).status_code == 200
    assert client.get(reverse("inbox")).status_code == 200
    assert client.get(reverse("sms_settings")).status_code == 200
    page = client.get(reverse("subscriber_detail", args=[them.pk])).content.decode()
    assert "Unsubscribe…" not in page
    for name, args in [
        ("subscriber_unsubscribe", [them.pk]),
        ("inbox_reply", [them.pk]),
        ("subscribers_import", []),
        ("sms_settings", []),
        ("sms_sender_connect", []),
        ("sms_sender_sandbox", []),
        ("sms_simulator", []),
    ]:
        response = client.post(reverse(name, args=args), {"body": "x", "confirm": "yes"})
        assert response.status_code == 403, name
    # The import and the simulator are not for viewers at all.
    assert client.get(reverse("subscribers_import")).status_code == 403
    assert client.get(reverse("sms_simulator")).status_code == 403
    assert subscriber(alice_brand.tenant, phone.number).status == "pending"


def test_marketers_reply_and_simulate_but_cannot_change_settings(alice_brand, bob):
    client = signed_in(bob)
    assert client.get(reverse("sms_simulator")).status_code == 200
    page = client.get(reverse("sms_settings"))
    assert page.status_code == 200 and "Save settings" not in page.content.decode()
    assert client.post(reverse("sms_settings"), {"window_end_hour": "20"}).status_code == 403
    assert client.get(reverse("subscribers_import")).status_code == 403


# --- subscribers ----------------------------------------------------------------------------


def test_subscribers_filter_by_status_source_and_number_digits(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    handset(alice_sender, "+12125550111").text("JOIN")  # pending, by keyword
    confirmed = handset(alice_sender, "+12125550112")
    confirmed.text("JOIN")
    confirmed.text("Y")  # subscribed, by keyword
    import_numbers(tenant, ["+13055550113"])  # subscribed, imported
    client = signed_in(alice_brand.owner)
    url = reverse("subscribers")

    def numbers(**params) -> set[str]:
        body = client.get(url, params).content.decode()
        return set(re.findall(r"\+1 \d{3}-555-01(\d\d)", body))

    assert numbers() == {"11", "12", "13"}
    assert numbers(status="subscribed") == {"12", "13"}
    assert numbers(status="pending") == {"11"}
    assert numbers(source="import") == {"13"}
    assert numbers(source="keyword", status="subscribed") == {"12"}
    assert numbers(q="0112") == {"12"}
    assert numbers(q="(305) 555") == {"13"}
    body = client.get(url, {"q": "999999"}).content.decode()
    assert "No subscriber matches" in body
    # Counts per status, with the other filters applied.
    body = client.get(url).content.decode()
    assert re.search(r"Subscribed <span class=\"count\">2</span>", body)
    assert re.search(r"Pending <span class=\"count\">1</span>", body)
    body = client.get(url, {"source": "import"}).content.decode()
    assert re.search(r"Subscribed <span class=\"count\">1</span>", body)
    # Newest first, each row linking to its page.
    body = client.get(url).content.decode()
    assert body.index("555-0113") < body.index("555-0111")
    newest = subscriber(tenant, "+13055550113")
    assert reverse("subscriber_detail", args=[newest.pk]) in body


def test_subscribers_page_by_keyset(alice_brand):
    numbers = [f"+1212555{n:04d}" for n in range(2000, 2060)]
    import_numbers(alice_brand.tenant, numbers)
    client = signed_in(alice_brand.owner)
    first = client.get(reverse("subscribers")).content.decode()
    assert "555-2059" in first and "Next page" in first and "555-2000" not in first
    after = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert re.fullmatch(r"\?after=\d+", after)
    second = client.get(reverse("subscribers") + after).content.decode()
    assert "555-2000" in second and "555-2059" not in second and "Next page" not in second
    assert "First page" in second


def test_subscriber_page_shows_consent_evidence_and_the_conversation(alice_brand, phone):
    phone.text("JOIN")
    phone.text("Y")
    phone.text("Do you deliver?")
    them = subscriber(alice_brand.tenant, phone.number)
    body = signed_in(alice_brand.owner).get(reverse("subscriber_detail", args=[them.pk]))
    page = body.content.decode()
    assert "+1 212-555-0101" in page and "Subscribed" in page and "Keyword" in page
    assert "NY, US" in page and "America/New_York" in page
    # Consent: the JOIN, then the Y, each with the text that was sent back.
    assert "Opt-in requested (awaiting confirmation)" in page and "Opt-in confirmed" in page
    assert "<code>JOIN</code>" in page and "<code>Y</code>" in page
    assert "Reply Y to confirm" in page and "You&#x27;re subscribed!" in page
    # The conversation both ways, with statuses.
    assert "Do you deliver?" in page and "They wrote" in page and "Queued" in page
    # A text comes before the automatic reply it caused (both carry the same time).
    conversation = page.split("<h2>Conversation</h2>")[1]
    assert conversation.index('<p class="body">JOIN</p>') < conversation.index("Reply Y to")
    assert conversation.index('<p class="body">Y</p>') < conversation.index("subscribed!")
    assert reverse("subscriber_consent_export", args=[them.pk]) in page


def test_subscriber_page_links_the_loyalty_member(alice_brand, phone):
    from programs.services import members

    with tenant_scope(alice_brand.tenant):
        ann = members.member_upsert(
            tenant=alice_brand.tenant,
            external_id="ann",
            now=timezone.now(),
            first_name="Ann",
            last_name="Lee",
            phone=phone.number,
        ).member
    phone.text("JOIN")
    them = subscriber(alice_brand.tenant, phone.number)
    page = signed_in(alice_brand.owner).get(reverse("subscriber_detail", args=[them.pk]))
    assert f'<a href="{reverse("member_detail", args=[ann.pk])}">Ann Lee</a>' in (
        page.content.decode()
    )


def test_consent_export_holds_every_piece_of_evidence(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    number = "+12125550120"
    import_numbers(
        tenant,
        [number],
        consent_url="https://shop.example/sms",
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (Phone)",
        source="popup",
    )
    them = handset(alice_sender, number)
    them.text("STOP")
    them.text("START")
    client = signed_in(alice_brand.owner)
    response = client.get(
        reverse("subscriber_consent_export", args=[subscriber(tenant, number).pk])
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="consent-12125550120.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["action"] for row in rows] == ["imported", "opt_out", "opt_in"]
    imported, stop, start = rows
    assert imported["phone"] == number and imported["source"] == "import"
    assert imported["disclosure_text"] == DISCLOSURE
    assert imported["page_url"] == "https://shop.example/sms"
    assert imported["ip"] == "203.0.113.7" and imported["user_agent"] == "Mozilla/5.0 (Phone)"
    assert '"consented_at": "2025-03-01T14:30:00-05:00"' in imported["evidence"]
    assert '"original_source": "popup"' in imported["evidence"]
    assert imported["actor"] == "test" and imported["recorded_at"]
    assert (stop["keyword"], stop["message_body"]) == ("STOP", "STOP")
    assert stop["inbound_sid"].startswith("SM") and "unsubscribed" in stop["confirmation_text"]
    assert start["disclosure_version"] == "1" and start["disclosure_text"]


def test_consent_export_keeps_texts_from_becoming_spreadsheet_formulas(alice_brand, phone):
    phone.text("=HYPERLINK(1) stop texting me")
    them = subscriber(alice_brand.tenant, phone.number)
    response = signed_in(alice_brand.owner).get(
        reverse("subscriber_consent_export", args=[them.pk])
    )
    (row,) = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["action"] == "opt_out" and row["message_body"] == "'=HYPERLINK(1) stop texting me"


def test_unsubscribe_asks_first_then_records_who_did_it(alice_brand, phone):
    phone.text("JOIN")
    phone.text("Y")
    tenant = alice_brand.tenant
    them = subscriber(tenant, phone.number)
    client = signed_in(alice_brand.owner)
    url = reverse("subscriber_unsubscribe", args=[them.pk])
    assert (
        "Unsubscribe…" in client.get(reverse("subscriber_detail", args=[them.pk])).content.decode()
    )
    with tenant_scope(tenant):
        texts_before = OutboundMessage.objects.count()
    ask = client.post(url)
    assert ask.status_code == 200
    assert "Yes, unsubscribe" in ask.content.decode() and 'name="confirm"' in ask.content.decode()
    assert subscriber(tenant, phone.number).status == "subscribed"  # nothing happened yet
    done = client.post(url, {"confirm": "yes", "reason": "Asked by phone"})
    assert done.status_code == 302 and done.url == reverse("subscriber_detail", args=[them.pk])
    assert subscriber(tenant, phone.number).status == "unsubscribed"
    with tenant_scope(tenant):
        record = ConsentRecord.objects.filter(subscriber=them).latest("id")
        assert OutboundMessage.objects.count() == texts_before  # no text about it
    assert (record.action, record.source, record.actor) == (
        "opt_out",
        "dashboard",
        alice_brand.owner.email,
    )
    assert record.evidence == {"reason": "Asked by phone"}
    page = client.get(reverse("subscriber_detail", args=[them.pk])).content.decode()
    assert "Unsubscribe…" not in page and "Asked by phone" in page


def test_marketers_cannot_unsubscribe(alice_brand, bob, phone):
    phone.text("JOIN")
    them = subscriber(alice_brand.tenant, phone.number)
    url = reverse("subscriber_unsubscribe", args=[them.pk])
    assert signed_in(bob).post(url, {"confirm": "yes"}).status_code == 403
    assert subscriber(alice_brand.tenant, phone.number).status == "pending"


# --- import ---------------------------------------------------------------------------------


def imported_page(client, tenant, data: dict) -> str:
    """Upload through the dashboard, let the worker's service run the import, and read the
    import's page."""
    from django.utils import timezone

    from messaging.services.imports import subscriber_import_run

    response = client.post(reverse("subscribers_import"), data)
    assert response.status_code == 302, response.content[:300]
    import_id = int(response["Location"].rstrip("/").split("/")[-1])
    queued = client.get(response["Location"]).content.decode()
    assert "Queued" in queued and 'hx-trigger="every 1s"' in queued
    subscriber_import_run(tenant=tenant, import_id=import_id, now=timezone.now())
    page = client.get(response["Location"]).content.decode()
    assert "hx-trigger" not in page  # done: the page stops polling
    return page


def test_import_reports_counts_and_line_errors(alice_brand):
    tenant = alice_brand.tenant
    import_numbers(tenant, ["+12125550130"])
    content = (
        b"phone,consented_at,consent_url,source\n"
        b"+12125550131,2025-03-01T10:00:00-05:00,https://shop.example/a,popup\n"  # line 2: ok
        b"not-a-number,2025-03-01T10:00:00-05:00,,\n"  # line 3
        b"+12125550132,yesterday,,\n"  # line 4
        b"+12125550130,2025-03-01T10:00:00-05:00,,\n"  # line 5: in already
        b"(212) 555-0133,2025-03-02T09:00:00Z,,\n"  # line 6: ok, national format
    )
    client = signed_in(alice_brand.owner)
    page = imported_page(client, tenant, {"file": upload(content), "consent_text": DISCLOSURE})
    assert "imported 2, already subscribed 1, failed 2." in page
    assert re.search(r'<td class="num">3</td><td>phone: &#x27;not-a-number&#x27;', page)
    assert re.search(r'<td class="num">4</td><td>consented_at:', page)
    with tenant_scope(tenant):
        record = ConsentRecord.objects.get(subscriber__phone="+12125550131")
    assert (record.action, record.disclosure_text, record.actor) == (
        "imported",
        DISCLOSURE,
        alice_brand.owner.email,
    )
    assert subscriber(tenant, "+12125550133").status == "subscribed"


def test_import_without_a_disclosure_fails_each_row_with_its_line(alice_brand):
    content = b"phone,consented_at\n+12125550134,2025-03-01T10:00:00-05:00\n"
    page = imported_page(
        signed_in(alice_brand.owner), alice_brand.tenant, {"file": upload(content)}
    )
    assert '<td class="num">2</td><td>consent_text:' in page
    with tenant_scope(alice_brand.tenant):
        assert not Subscriber.objects.exists()


def test_import_refuses_files_over_5_mb_and_non_csv(alice_brand):
    client = signed_in(alice_brand.owner)
    big = b"phone,consented_at,consent_text\n" + b"x" * (5 * 2**20)
    response = client.post(reverse("subscribers_import"), {"file": upload(big)})
    assert response.status_code == 422
    assert "files up to 5 MB are accepted" in response.content.decode()
    latin1 = "phone,consent_text\n+12125550135,Généralement\n".encode("latin-1")
    response = client.post(reverse("subscribers_import"), {"file": upload(latin1)})
    assert response.status_code == 422 and "isn&#x27;t UTF-8" in response.content.decode()
    response = client.post(reverse("subscribers_import"), {})
    assert response.status_code == 422 and "This field is required" in response.content.decode()
    with tenant_scope(alice_brand.tenant):
        assert not Subscriber.objects.exists()


def test_import_reports_a_bad_ip_on_its_line_and_imports_the_rest(alice_brand):
    content = (
        b"phone,consented_at,consent_text,ip\n"
        b"+12125550136,2025-03-01T10:00:00-05:00,Yes,203.0.113.7\n"
        b"+12125550137,2025-03-01T10:00:00-05:00,Yes,not-an-ip\n"
        b"+12125550138,2025-03-01T10:00:00-05:00,Yes,\n"
    )
    page = imported_page(
        signed_in(alice_brand.owner), alice_brand.tenant, {"file": upload(content)}
    )
    assert "not-an-ip" in page and "is not an IP address" in page
    assert subscriber(alice_brand.tenant, "+12125550136").status == "subscribed"
    assert subscriber(alice_brand.tenant, "+12125550138").status == "subscribed"
    with tenant_scope(alice_brand.tenant):
        assert not Subscriber.objects.filter(phone="+12125550137").exists()


# --- inbox ----------------------------------------------------------------------------------


def test_inbox_counts_unread_and_flags_possible_opt_outs(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    chatty = handset(alice_sender, "+12125550140")
    chatty.text("Are you open on Sunday?")
    chatty.text("And is there parking?")
    unsure = handset(alice_sender, "+12125550141")
    unsure.text("who is this")
    handset(alice_sender, "+12125550149").text("JOIN")  # a keyword: in the inbox, not unread
    client = signed_in(alice_brand.owner)
    page = client.get(reverse("inbox")).content.decode()
    assert "Inbox (3" in page  # the nav: 2 + 1 unread texts
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    assert len(rows) == 3
    assert "555-0149" in rows[0] and "555-0141" in rows[1] and "555-0140" in rows[2]  # newest
    assert 'class="badge"' in rows[2] and ">2<" in rows[2] and "And is there parking?" in rows[2]
    assert "Needs attention" in rows[1] and "badge" not in rows[0]
    attention = client.get(reverse("inbox"), {"show": "attention"}).content.decode()
    assert "555-0141" in attention and "555-0140" not in attention
    unread = client.get(reverse("inbox"), {"show": "unread"}).content.decode()
    assert "555-0140" in unread and "555-0149" not in unread

    # Opening a conversation reads it.
    chatty_id = subscriber(tenant, chatty.number).pk
    thread = client.get(reverse("inbox_conversation", args=[chatty_id])).content.decode()
    assert "Are you open on Sunday?" in thread and "And is there parking?" in thread
    assert subscriber(tenant, chatty.number).unread_count == 0
    assert "Inbox (1" in client.get(reverse("inbox")).content.decode()
    unsure_id = subscriber(tenant, unsure.number).pk
    flagged = client.get(reverse("inbox_conversation", args=[unsure_id])).content.decode()
    assert "might be asking to stop" in flagged
    them = subscriber(tenant, unsure.number)
    # Read, but a possible opt-out stays flagged until a person resolves it.
    assert (them.unread_count, them.needs_attention) == (0, True)
    after = client.get(reverse("inbox")).content.decode()
    assert "Inbox (" not in after and ">Inbox</a>" in after
    response = client.post(reverse("inbox_resolve", args=[unsure_id]))
    assert response.status_code == 302
    assert subscriber(tenant, unsure.number).needs_attention is False
    with tenant_scope(tenant):
        # The flag stays on the text itself, and who resolved it is recorded.
        assert InboundMessage.objects.get(subscriber=them).needs_attention
        from loyaltysms.models import AuditEvent

        assert AuditEvent.objects.filter(action="inbox.resolved", actor=alice_brand.owner).exists()


def test_a_viewer_opening_a_conversation_leaves_it_unread(alice_brand, vera, phone):
    phone.text("Hello?")
    them = subscriber(alice_brand.tenant, phone.number)
    page = signed_in(vera).get(reverse("inbox_conversation", args=[them.pk])).content.decode()
    assert "Hello?" in page and "Send reply" not in page
    assert subscriber(alice_brand.tenant, phone.number).unread_count == 1


def test_inbox_pages_by_keyset(alice_brand, alice_sender):
    for n in range(52):
        handset(alice_sender, f"+1212555{3000 + n:04d}").text("hi")
    client = signed_in(alice_brand.owner)
    first = client.get(reverse("inbox")).content.decode()
    assert "555-3051" in first and "555-3002" in first and "555-3001" not in first
    after = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(reverse("inbox") + after).content.decode()
    assert "555-3001" in second and "555-3000" in second and "555-3002" not in second
    assert "Next page" not in second


def test_reply_queues_a_text_that_the_dispatcher_sends(alice_brand, bob, phone):
    phone.text("JOIN")
    phone.text("Y")
    phone.text("Do you have gluten-free bread?")
    them = subscriber(alice_brand.tenant, phone.number)
    client = signed_in(bob)
    url = reverse("inbox_reply", args=[them.pk])
    empty = client.post(url, {"body": "  "})
    assert empty.status_code == 422 and "This field is required" in empty.content.decode()
    response = client.post(url, {"body": "Yes, every {day} from 8!"})
    assert response.status_code == 302
    assert response.url == reverse("inbox_conversation", args=[them.pk])
    with tenant_scope(alice_brand.tenant):
        reply = OutboundMessage.objects.filter(source="inbox").get()
    assert (reply.body, reply.kind, reply.source_ref) == (
        "Yes, every {day} from 8!",  # sent as written
        "transactional",
        bob.email,
    )
    dispatch_due()
    reply.refresh_from_db()
    assert reply.status == "sent"
    assert phone.received()[-1] == "Yes, every {day} from 8!"
    page = client.get(response.url).content.decode()
    assert "Yes, every {day} from 8!" in page and "Sent" in page


def test_a_reply_to_an_unsubscribed_number_is_never_sent(alice_brand, bob, phone):
    phone.text("JOIN")
    phone.text("Y")
    phone.text("STOP")
    dispatch_due()
    them = subscriber(alice_brand.tenant, phone.number)
    client = signed_in(bob)
    page = client.get(reverse("inbox_conversation", args=[them.pk])).content.decode()
    assert "This number has unsubscribed" in page and "will not be sent" in page
    response = client.post(reverse("inbox_reply", args=[them.pk]), {"body": "Sorry to see you go"})
    assert response.status_code == 302
    dispatch_due()
    with tenant_scope(alice_brand.tenant):
        reply = OutboundMessage.objects.get(source="inbox")
    assert (reply.status, reply.status_reason) == ("suppressed", "unsubscribed")
    assert reply.carrier_sid is None and reply.sent_at is None  # never handed to the carrier


# --- settings and senders -------------------------------------------------------------------


def settings_form(tenant, **changes) -> dict:
    """The settings form as the page would post it, with `changes`."""
    current = messaging_settings_get(tenant)
    data = {name: getattr(current, name) for name in SETTINGS_FIELDS}
    data["join_keywords"] = ", ".join(current.join_keywords)
    data.update(changes)
    return {name: value for name, value in data.items() if value is not False}  # checkboxes


def field_errors(page: str, field: str) -> list[str]:
    """The errors shown inside the field's own block."""
    block = page.split(f'for="id_{field}"')[1].split('<div class="field">')[0]
    return re.findall(r'<p class="error" role="alert">([^<]*)</p>', block)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"window_end_hour": 22}, "window_end_hour", "after 21:00"),
        ({"window_start_hour": 7}, "window_start_hour", "before 8:00"),
        ({"window_start_hour": 12, "window_end_hour": 10}, "window_end_hour", "end after"),
        ({"cap_messages": 3, "cap_hours": 12}, "cap_messages", "at least 36 hours"),
        ({"cap_messages": 2, "cap_hours": 23}, "cap_messages", "at least 24 hours"),
        ({"join_keywords": "JOIN, stop"}, "join_keywords", "carrier keyword"),
        ({"join_keywords": " , "}, "join_keywords", "at least one keyword"),
        ({"footer_text": "Bye"}, "footer_text", "include STOP"),
    ],
)
def test_settings_refuse_looser_than_the_law_next_to_the_field(alice_brand, changes, field, says):
    tenant = alice_brand.tenant
    client = signed_in(alice_brand.owner)
    response = client.post(reverse("sms_settings"), settings_form(tenant, **changes))
    assert response.status_code == 422
    errors = field_errors(response.content.decode(), field)
    assert errors and says in errors[0], errors
    with tenant_scope(tenant):
        saved = MessagingSettings.objects.get()
    assert (saved.window_start_hour, saved.window_end_hour) == (8, 21)
    assert (saved.cap_messages, saved.cap_hours, saved.join_keywords) == (1, 12, ["JOIN"])


def test_the_models_own_rules_back_the_form_up(alice_brand):
    """The ModelForm runs the model's validators and check constraints too: a value the
    form's own checks let through is still a form error, never a 500 at save."""
    from messaging.forms import MessagingSettingsForm

    class WithoutOwnChecks(MessagingSettingsForm):
        def clean(self):
            return self.cleaned_data

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        form = WithoutOwnChecks(
            settings_form(tenant, cap_messages=3, cap_hours=12),
            instance=messaging_settings_get(tenant),
        )
        assert not form.is_valid()
        assert "messaging_cap_not_looser" in " ".join(form.non_field_errors())
        form = WithoutOwnChecks(
            settings_form(tenant, window_end_hour=22), instance=messaging_settings_get(tenant)
        )
        assert not form.is_valid() and "window_end_hour" in form.errors


def test_settings_save_stricter_values_and_version_a_new_disclosure(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    client = signed_in(alice_brand.owner)
    page = client.get(reverse("sms_settings")).content.decode()
    assert "Federal law: no marketing texts before 8:00" in page and "Now version 1" in page
    assert 'value="JOIN"' in page
    new_disclosure = "Join our texts: up to 4 msgs/month. Msg & data rates may apply. STOP to end."
    response = client.post(
        reverse("sms_settings"),
        settings_form(
            tenant,
            join_keywords="join, vip , Vip",
            window_start_hour=9,
            window_end_hour=20,
            cap_messages=2,
            cap_hours=48,
            disclosure_text=new_disclosure,
            smart_encoding=True,
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_scope(tenant):
        saved = MessagingSettings.objects.get()
        audit = AuditEvent.objects.filter(action="messaging.settings").get()
    assert saved.join_keywords == ["JOIN", "VIP"]
    assert (saved.window_start_hour, saved.window_end_hour) == (9, 20)
    assert (saved.cap_messages, saved.cap_hours, saved.smart_encoding) == (2, 48, True)
    assert (saved.disclosure_text, saved.disclosure_version) == (new_disclosure, 2)
    assert audit.actor == alice_brand.owner
    # Saving again unchanged keeps the version.
    assert client.post(reverse("sms_settings"), settings_form(tenant)).status_code == 302
    with tenant_scope(tenant):
        assert MessagingSettings.objects.get().disclosure_version == 2
    assert "Now version 2" in client.get(reverse("sms_settings")).content.decode()
    # The new keyword works at once.
    handset(alice_sender, "+12125550150").text("vip")
    them = subscriber(tenant, "+12125550150")
    assert them.status == "pending"


ACCOUNT = "AC" + "1f" * 16
TOKEN = "9a7c" * 8


def test_connect_twilio_never_echoes_the_token_and_stores_it_encrypted(alice_brand):
    tenant = alice_brand.tenant
    client = signed_in(alice_brand.owner)
    url = reverse("sms_sender_connect")
    bad = client.post(
        url, {"account_sid": "AC123", "auth_token": TOKEN, "from_number": "", "mps": "1"}
    )
    assert bad.status_code == 422
    page = bad.content.decode()
    assert TOKEN not in page
    assert "AC followed by 32 hex characters" in field_errors(page, "account_sid")[0]
    assert "either a From number" in field_errors(page, "from_number")[0]
    not_a_number = client.post(
        url, {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "12", "mps": "1"}
    )
    assert not_a_number.status_code == 422 and TOKEN not in not_a_number.content.decode()
    assert field_errors(not_a_number.content.decode(), "from_number")
    done = client.post(
        url,
        {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "+14155550100", "mps": "3"},
    )
    assert done.status_code == 302 and done.url == reverse("sms_settings")
    with tenant_scope(tenant):
        sender = Sender.objects.get(is_default=True)
    assert (sender.kind, sender.phone_number, sender.mps) == ("twilio", "+14155550100", 3)
    assert TOKEN.encode() not in bytes(sender.auth_token_encrypted)
    assert decrypt(sender.auth_token_encrypted) == TOKEN
    page = client.get(reverse("sms_settings")).content.decode()
    assert TOKEN not in page and "+14155550100" in page and "Use the sandbox" in page
    assert "/webhooks/twilio/inbound" in page
    with tenant_scope(tenant):
        assert all(TOKEN not in str(e.detail) for e in AuditEvent.objects.all())


def test_use_the_sandbox_again(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    client = signed_in(alice_brand.owner)
    client.post(
        reverse("sms_sender_connect"),
        {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "+14155550100", "mps": "1"},
    )
    simulator = client.get(reverse("sms_simulator")).content.decode()
    assert "only works with the sandbox" in simulator and reverse("sms_settings") in simulator
    response = client.post(reverse("sms_sender_sandbox"))
    assert response.status_code == 302
    with tenant_scope(tenant):
        assert Sender.objects.get(is_default=True).kind == SenderKind.SANDBOX


# --- phone simulator ------------------------------------------------------------------------

TEST_NUMBER = "+13055550143"


def test_simulator_join_then_y_subscribes_the_test_number(alice_brand, alice_sender, bob):
    tenant = alice_brand.tenant
    client = signed_in(bob)
    url = reverse("sms_simulator")
    page = client.get(url, {"number": TEST_NUMBER}).content.decode()
    assert "Miami, FL" in page and 'hx-trigger="every 2s"' in page
    assert 'value="JOIN"' in page and 'value="STOP"' in page
    response = client.post(url, {"number": TEST_NUMBER, "body": "JOIN"})
    assert response.status_code == 302 and response.url == f"{url}?number=%2B13055550143"
    assert subscriber(tenant, TEST_NUMBER).status == "pending"
    dispatch_due()
    thread = client.get(response.url, headers={"HX-Request": "true"}).content.decode()
    assert thread.lstrip().startswith('<section class="card" id="simulator-thread"')
    assert "Reply Y to confirm" in thread and "Sent" in thread
    client.post(url, {"number": TEST_NUMBER, "body": "Y"})
    dispatch_due()
    assert subscriber(tenant, TEST_NUMBER).status == "subscribed"
    thread = client.get(response.url, headers={"HX-Request": "true"}).content.decode()
    assert "You&#x27;re subscribed!" in thread
    # It went through the real webhook: the inbox and the consent history have it.
    with tenant_scope(tenant):
        assert InboundMessage.objects.filter(from_number=TEST_NUMBER).count() == 2
        actions = list(
            ConsentRecord.objects.filter(subscriber__phone=TEST_NUMBER).values_list(
                "action", flat=True
            )
        )
    assert actions == ["opt_in_requested", "opt_in_confirmed"]


def test_simulator_texts_only_from_its_test_numbers(alice_brand, alice_sender, bob):
    client = signed_in(bob)
    response = client.post(reverse("sms_simulator"), {"number": "+12125550101", "body": "JOIN"})
    assert response.status_code == 422
    with tenant_scope(alice_brand.tenant):
        assert not InboundMessage.objects.exists()
    # An unknown ?number= falls back to the first test number.
    page = client.get(reverse("sms_simulator"), {"number": "+12125550101"}).content.decode()
    assert "Received on +12125550142" in page


# --- fixed number of queries ----------------------------------------------------------------


def queries(client, url: str) -> int:
    client.get(url)  # warm: session, first-use rows
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_subscribers_page_queries_do_not_grow_with_data(alice_brand, charlie_brand):
    from programs.services import members

    def fill(brand, n: int) -> None:
        tenant = brand.tenant
        numbers = [f"+1212555{4000 + i:04d}" for i in range(n)]
        with tenant_scope(tenant):
            for number in numbers[: n // 2]:  # half of them linked to members
                members.member_upsert(
                    tenant=tenant, external_id=number, now=timezone.now(), phone=number
                )
        import_numbers(tenant, numbers)

    fill(alice_brand, 2)
    fill(charlie_brand, 40)
    small = queries(signed_in(alice_brand.owner), reverse("subscribers"))
    large = queries(signed_in(charlie_brand.owner), reverse("subscribers"))
    assert small == large, (small, large)


def test_inbox_and_subscriber_page_queries_do_not_grow_with_data(
    alice_brand, charlie_brand, alice_sender, charlie_sender
):
    def fill(sender, phones: int, texts: int) -> int:
        for n in range(phones):
            them = handset(sender, f"+1212555{5000 + n:04d}")
            them.text("JOIN")
            for i in range(texts):
                them.text(f"Question {i}?")
        subscriber_opt_in(
            tenant=sender.tenant,
            phone="+12125555000",
            evidence=Evidence(source="web_form", disclosure_text=DISCLOSURE),
            now=timezone.now(),
        )
        return subscriber(sender.tenant, "+12125555000").pk

    small_id = fill(alice_sender, 1, 1)
    large_id = fill(charlie_sender, 12, 6)
    alice, charlie = signed_in(alice_brand.owner), signed_in(charlie_brand.owner)
    assert queries(alice, reverse("inbox")) == queries(charlie, reverse("inbox"))
    small = queries(alice, reverse("subscriber_detail", args=[small_id]))
    large = queries(charlie, reverse("subscriber_detail", args=[large_id]))
    assert small == large, (small, large)
    # A conversation page too (after its first visit marked it read).
    small = queries(alice, reverse("inbox_conversation", args=[small_id]))
    large = queries(charlie, reverse("inbox_conversation", args=[large_id]))
    assert small == large, (small, large)
