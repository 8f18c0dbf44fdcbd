"""Tracked links, the sandbox carrier's receipts, CSV import of consented numbers, and the
personalization tags."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging import rendering
from messaging.gateways.sandbox import receipt_plan
from messaging.models import ConsentRecord, OutboundMessage, ShortLink, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.imports import subscribers_import_csv
from messaging.services.outbound import BodyInvalid, message_create
from messaging.services.status import sandbox_receipts_deliver
from messaging.services.subscribers import Evidence, subscriber_opt_in

PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"


@pytest.fixture
def subscriber(alice_brand, alice_sender):
    alice_sender.mps = 1000
    alice_sender.save()
    with tenant_scope(alice_brand.tenant):
        return subscriber_opt_in(
            tenant=alice_brand.tenant,
            phone="+12125550101",
            evidence=Evidence(source="import"),
            now=timezone.now(),
            double_opt_in=False,
            send_confirmation=False,
        )


def marketing(tenant, subscriber, template: str, key: str = "m1", **extra):
    with tenant_scope(tenant):
        return message_create(
            tenant=tenant,
            subscriber=subscriber,
            template=template,
            kind="marketing",
            source="campaign",
            dedupe_key=key,
            now=timezone.now(),
            **extra,
        )[0]


def test_a_click_is_recorded_once_per_recipient_and_link(alice_brand, subscriber):
    marketing(alice_brand.tenant, subscriber, "Sale: https://bakery.test/sale")
    with tenant_scope(alice_brand.tenant):
        link = ShortLink.objects.get()
    client = Client(headers={"User-Agent": PHONE_UA})
    for _ in range(3):
        response = client.get(f"/l/{link.code}")
        assert response.status_code == 302
        assert response["Location"] == "https://bakery.test/sale"
    link.refresh_from_db()
    assert link.first_clicked_at is not None
    first = link.first_clicked_at
    assert link.clicks == 3
    client.get(f"/l/{link.code}")
    link.refresh_from_db()
    assert link.first_clicked_at == first


@pytest.mark.parametrize(
    "agent",
    [
        "facebookexternalhit/1.1 Facebot Twitterbot/1.0",  # iMessage's link preview
        "WhatsApp/2.23.20.0",
        "Mozilla/5.0 (compatible; Google-Read-Aloud; +https://support.google.com/)",
        "Slackbot-LinkExpanding 1.0",
        "",
    ],
)
def test_link_preview_fetchers_are_not_counted_as_clicks(alice_brand, subscriber, agent):
    marketing(alice_brand.tenant, subscriber, "Sale: https://bakery.test/sale")
    with tenant_scope(alice_brand.tenant):
        link = ShortLink.objects.get()
    response = Client(headers={"User-Agent": agent}).get(f"/l/{link.code}")
    assert response.status_code == 302
    link.refresh_from_db()
    assert (link.clicks, link.first_clicked_at) == (0, None)


def test_head_requests_are_not_clicks(alice_brand, subscriber):
    marketing(alice_brand.tenant, subscriber, "Sale: https://bakery.test/sale")
    with tenant_scope(alice_brand.tenant):
        link = ShortLink.objects.get()
    assert Client(headers={"User-Agent": PHONE_UA}).head(f"/l/{link.code}").status_code == 302
    link.refresh_from_db()
    assert link.clicks == 0


def test_an_unknown_link_is_404(db):
    assert Client().get("/l/nope123").status_code == 404


def test_sandbox_reports_delivery_through_the_status_path(
    alice_brand, subscriber, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        message = marketing(alice_brand.tenant, subscriber, "Hello {first_name|there}")
        noon = (timezone.now() + timedelta(days=1)).replace(
            hour=17, minute=0, second=0
        )  # 13:00 in New York
        assert dispatch_due(now=lambda: noon).sent == 1
    message.refresh_from_db()
    final, error_code, _ = receipt_plan(message.carrier_sid)
    assert sandbox_receipts_deliver(until=time.time() + 0.1) == 0  # not yet: realistic delays
    # "sent" (no change: the text is sent already), then the final status.
    assert sandbox_receipts_deliver(until=time.time() + 5) == 1
    message.refresh_from_db()
    assert message.status == final
    assert message.error_code == error_code
    assert sandbox_receipts_deliver(until=time.time() + 60) == 0  # each receipt once


def test_sandbox_fails_some_texts_like_a_carrier():
    outcomes = [receipt_plan(f"SM{n:032x}")[0] for n in range(2000)]
    failed = outcomes.count("undelivered") / len(outcomes)
    assert 0.005 < failed < 0.05
    assert all(1.0 <= receipt_plan(f"SM{n:032x}")[2] <= 4.0 for n in range(100))


def test_sandbox_test_numbers_behave_like_twilios(alice_brand, alice_sender):
    alice_sender.mps = 1000
    alice_sender.save()
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        for number in ("+15005550001", "+15005550004"):
            subscriber = Subscriber.objects.create(
                phone=number, status="subscribed", source="import"
            )
            message_create(
                tenant=tenant,
                subscriber=subscriber,
                template="Your code",
                kind="transactional",
                source="test",
                dedupe_key=number,
                now=timezone.now(),
            )
    assert dispatch_due().suppressed == 2
    with tenant_scope(tenant):
        assert Subscriber.objects.get(phone="+15005550004").status == "unsubscribed"
        assert Subscriber.objects.get(phone="+15005550001").status == "subscribed"


IMPORT = b"""phone,consented_at,consent_text,consent_url,ip
(212) 555-0101,2026-01-02T10:00:00-05:00,I agree to texts,https://bakery.test/old-form,203.0.113.1
+1 212 555 0102,2026-01-03T10:00:00Z,,,
not-a-phone,2026-01-03T10:00:00Z,I agree,,
+12125550103,yesterday,I agree,,
+12125550101,2026-01-02T10:00:00-05:00,I agree to texts,,
"""


def test_import_subscribes_consented_numbers_with_their_evidence(alice_brand, alice_sender):
    tenant = alice_brand.tenant
    report = subscribers_import_csv(
        tenant=tenant, file=IMPORT, now=timezone.now(), consent_text="Old store sign-up sheet"
    )
    assert (report.imported, report.already_subscribed, report.failed) == (2, 1, 2)
    assert [line for line, _ in report.errors] == [4, 5]
    assert "phone" in report.errors[0][1] and "consented_at" in report.errors[1][1]
    with tenant_scope(tenant):
        first = ConsentRecord.objects.filter(subscriber__phone="+12125550101").first()
        second = ConsentRecord.objects.get(subscriber__phone="+12125550102")
        assert Subscriber.objects.filter(status="subscribed").count() == 2
        assert not OutboundMessage.objects.exists()  # they confirmed where they signed up
    assert first.action == "imported" and first.source == "import"
    assert first.disclosure_text == "I agree to texts"
    assert first.page_url == "https://bakery.test/old-form" and first.ip == "203.0.113.1"
    assert first.evidence["consented_at"] == "2026-01-02T10:00:00-05:00"
    assert second.disclosure_text == "Old store sign-up sheet"


def test_import_without_a_phone_column_says_so(alice_brand):
    report = subscribers_import_csv(
        tenant=alice_brand.tenant, file=b"a,b\n1,2\n", now=timezone.now()
    )
    assert report.failed == 1 and "phone" in report.errors[0][1]


# --- personalization tags ------------------------------------------------------------------


def test_tags_fill_in_with_fallbacks():
    text = rendering.render(
        "Hi {first_name|there}, {points_balance} {points_name}. {vip_tier|Member}",
        {"first_name": "", "points_balance": "1,200", "points_name": "stars"},
    )
    assert text == "Hi there, 1,200 stars. Member"


def test_literal_braces_and_link_tags():
    assert rendering.render("{{not a tag}} {link:https://x.test/a}", {}) == (
        "{not a tag} https://x.test/a"
    )
    assert rendering.unknown_tags("{{first_name}} {link:https://x.test/a}") == []


@pytest.mark.parametrize(
    ("template", "unknown"),
    [
        ("Hi {firstname}", ["{firstname}"]),
        ("{first_name|x} {pointsbalance} {pointsbalance}", ["{pointsbalance}"]),
        ("{link:not-a-url}", ["{link:not-a-url}"]),
        ("{ first_name }", ["{ first_name }"]),
    ],
)
def test_unknown_tags_are_found(template, unknown):
    assert rendering.unknown_tags(template) == unknown


def test_a_template_with_an_unknown_tag_is_refused_before_sending(alice_brand, subscriber):
    with pytest.raises(BodyInvalid, match=r"\{frist_name\}"):
        marketing(alice_brand.tenant, subscriber, "Hi {frist_name}")
    with tenant_scope(alice_brand.tenant):
        assert not OutboundMessage.objects.exists()


def test_a_text_too_long_after_personalization_is_refused(alice_brand, subscriber):
    with pytest.raises(BodyInvalid, match="1600"):
        marketing(alice_brand.tenant, subscriber, "x" * 1601)


def test_personalization_reads_loyalty_data(alice_brand, subscriber):
    from decimal import Decimal

    from programs.services.members import member_upsert
    from programs.services.orders import order_record

    tenant = alice_brand.tenant
    now = timezone.now()
    member = member_upsert(
        tenant=tenant, external_id="c1", now=now, first_name="Ana", phone="+12125550101"
    ).member
    order_record(
        tenant=tenant,
        order_id="o1",
        member_external_id="c1",
        subtotal=Decimal("42.00"),
        currency="USD",
        now=now,
    )
    from programs.selectors import personalization

    member.refresh_from_db()
    values = personalization(tenant, [member], now)[member.pk]
    assert values["first_name"] == "Ana"
    assert values["points_balance"] == "42"
    assert values["points_name"] == "points"
    message = marketing(
        tenant,
        subscriber,
        "{first_name}, you have {points_balance} {points_name}",
        values=values,
    )
    assert message.body.startswith("Ana, you have 42 points")


def test_import_and_connect_commands(alice_brand, tmp_path, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    path = tmp_path / "numbers.csv"
    path.write_bytes(IMPORT)
    with pytest.raises(SystemExit):  # two bad rows: a failing exit status
        call_command("import_subscribers", "alices-bakery", str(path), consent_text="Sheet")
    out, err = capsys.readouterr()
    assert "imported 2, already subscribed 1, failed 2" in out
    assert "line 4: phone" in err

    call_command(
        "connect_twilio",
        "alices-bakery",
        "--account-sid",
        "AC" + "ab" * 16,
        "--auth-token",
        "secret-token-0123456789",
        "--from",
        "+14155550100",
        "--mps",
        "30",
    )
    out, _ = capsys.readouterr()
    assert '"sender": "+14155550100"' in out and "secret-token" not in out
    with pytest.raises(CommandError, match="Account SID"):
        call_command(
            "connect_twilio", "alices-bakery", "--account-sid", "nope", "--auth-token", "x" * 20,
            "--from", "+14155550100",
        )  # fmt: skip


def test_carrier_secrets_survive_a_key_rotation(alice_brand, alice_sender, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from messaging.crypto import decrypt

    old_key = settings.FIELD_ENCRYPTION_KEY
    token = decrypt(alice_sender.auth_token_encrypted)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = f"{new_key},{old_key}"
    call_command("rotate_carrier_secrets")
    settings.FIELD_ENCRYPTION_KEY = new_key  # the old key is gone
    alice_sender.refresh_from_db()
    assert decrypt(alice_sender.auth_token_encrypted) == token


def test_import_reports_bad_ips_urls_and_encodings_by_line(alice_brand):
    content = (
        b"phone,consented_at,consent_text,ip,consent_url\n"
        b"+12125550101,2026-01-02T10:00:00Z,ok,not-an-ip,\n"
        b"+12125550102,2026-01-02T10:00:00Z,ok,,javascript:alert(1)\n"
        b"+12125550103,2026-01-02T10:00:00Z,ok,2001:db8::1,https://x.test/f\n"
    )
    report = subscribers_import_csv(tenant=alice_brand.tenant, file=content, now=timezone.now())
    assert (report.imported, report.failed) == (1, 2)
    assert [line for line, _ in report.errors] == [2, 3]
    latin1 = "phone,consent_text\n+12125550104,caf\xe9\n".encode("latin-1")
    report = subscribers_import_csv(tenant=alice_brand.tenant, file=latin1, now=timezone.now())
    assert report.failed == 1 and "UTF-8" in report.errors[0][1]
