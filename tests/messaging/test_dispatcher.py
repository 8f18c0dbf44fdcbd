"""The dispatcher and the Twilio gateway against a local server speaking Twilio's protocol:
requests checked against Twilio's published spec, carrier errors handled per compliance.md,
pacing, at-most-once sending."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageKind, MessageStatus, OutboundMessage, Subscriber
from messaging.services.dispatch import dispatch_due, sending_settle_stale
from messaging.services.outbound import message_create
from messaging.services.setup import sender_connect_twilio
from messaging.services.subscribers import Evidence, subscriber_opt_in
from messaging.simulator import TEST_NUMBERS
from tests.fake_twilio import FakeTwilio

ACCOUNT = "AC" + "1f" * 16
TOKEN = "9a" * 16
SERVICE = "MG" + "2e" * 16
FROM = "+14155550100"
TO = "+12125550101"


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        server.add_account(ACCOUNT, TOKEN)
        server.timeout_delay = 2.0
        with override_settings(TWILIO_API_BASE_URL=server.base_url):
            yield server


@pytest.fixture
def twilio_sender(alice_brand, fake):
    return sender_connect_twilio(
        tenant=alice_brand.tenant, account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM, mps=500
    )


def subscribed(tenant, number: str = TO) -> Subscriber:
    return subscriber_opt_in(
        tenant=tenant,
        phone=number,
        evidence=Evidence(source="import"),
        now=timezone.now() - timedelta(days=1),
        double_opt_in=False,
        send_confirmation=False,
    )


def queue(tenant, subscriber, key: str, *, kind=MessageKind.TRANSACTIONAL, expires_at=None):
    message, _ = message_create(
        tenant=tenant,
        subscriber=subscriber,
        template="Your reward code is RWD-42. Enjoy!",
        kind=kind,
        source="test",
        dedupe_key=key,
        now=timezone.now(),
        expires_at=expires_at,
    )
    return message


def test_requests_match_twilios_spec_from_a_number(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        message = queue(
            tenant, subscribed(tenant), "a", expires_at=timezone.now() + timedelta(hours=2)
        )
    assert dispatch_due().sent == 1
    assert fake.schema_violations() == []
    (request,) = fake.requests
    params = request.params
    assert params["To"] == TO and params["From"] == FROM
    assert params["Body"] == "Your reward code is RWD-42. Enjoy!"
    assert params["StatusCallback"].endswith(f"/webhooks/twilio/status?m={message.pk}")
    assert 7190 <= int(params["ValidityPeriod"]) <= 7200
    assert "MessagingServiceSid" not in params
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.carrier_sid == fake.messages[0]["sid"]


def test_requests_match_twilios_spec_from_a_messaging_service(alice_brand, fake):
    tenant = alice_brand.tenant
    sender_connect_twilio(
        tenant=tenant, account_sid=ACCOUNT, auth_token=TOKEN, messaging_service_sid=SERVICE
    )
    with tenant_scope(tenant):
        queue(tenant, subscribed(tenant), "a")
    assert dispatch_due().sent == 1
    assert fake.schema_violations() == []
    params = fake.requests[0].params
    assert params["MessagingServiceSid"] == SERVICE
    assert "From" not in params and "ValidityPeriod" not in params


def test_the_auth_token_is_stored_encrypted(alice_brand, twilio_sender):
    raw = bytes(twilio_sender.auth_token_encrypted)
    assert TOKEN.encode() not in raw
    from messaging.crypto import decrypt

    assert decrypt(raw) == TOKEN


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [("invalid_number", "suppressed", "21211"), ("not_mobile", "suppressed", "21614")],
)
def test_invalid_numbers_are_suppressed(alice_brand, twilio_sender, fake, behaviour, status, code):
    tenant = alice_brand.tenant
    fake.set_behaviour(TO, behaviour)
    with tenant_scope(tenant):
        message = queue(tenant, subscribed(tenant), "a")
    report = dispatch_due()
    assert report.suppressed == 1
    message.refresh_from_db()
    assert (message.status, message.error_code) == (status, code)


def test_a_carrier_opt_out_unsubscribes_the_number(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    fake.set_behaviour(TO, "opted_out")
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        message = queue(tenant, subscriber, "a")
        queue(tenant, subscriber, "b")
    report = dispatch_due()
    # The first was refused with 21610; the second is never even attempted.
    assert (report.suppressed, report.sent) == (2, 0)
    assert len(fake.requests) == 1
    message.refresh_from_db()
    assert message.error_code == "21610"
    subscriber.refresh_from_db()
    assert subscriber.status == "unsubscribed"
    with tenant_scope(tenant):
        assert subscriber.consent.last().source == "carrier"


@pytest.mark.parametrize("behaviour", ["rate_limited", "server_error"])
def test_temporary_errors_are_retried_with_backoff(alice_brand, twilio_sender, fake, behaviour):
    tenant = alice_brand.tenant
    fake.set_behaviour(TO, behaviour)
    with tenant_scope(tenant):
        message = queue(tenant, subscribed(tenant), "a")
    assert dispatch_due().retried == 1
    message.refresh_from_db()
    assert message.status == "queued"
    assert message.send_after > timezone.now() + timedelta(seconds=20)
    fake.set_behaviour(TO, "ok")
    assert dispatch_due().claimed == 0  # not before its time
    later = message.send_after + timedelta(seconds=1)
    assert dispatch_due(now=lambda: later).sent == 1
    assert len(fake.sent_to(TO)) == 1


def test_a_timeout_after_sending_leaves_the_text_unknown_and_never_resends(
    alice_brand, twilio_sender, fake, monkeypatch
):
    from messaging.gateways import twilio as twilio_gateway

    monkeypatch.setattr(twilio_gateway, "TIMEOUT", 0.5)
    twilio_gateway._local.__dict__.clear()  # clients are cached per thread with their timeout
    tenant = alice_brand.tenant
    fake.set_behaviour(TO, "timeout")
    with tenant_scope(tenant):
        message = queue(tenant, subscribed(tenant), "a")
    assert dispatch_due().unknown == 1
    message.refresh_from_db()
    assert message.status == "unknown"
    fake.set_behaviour(TO, "ok")
    for _ in range(3):
        assert dispatch_due(now=lambda: timezone.now() + timedelta(days=1)).claimed == 0
    assert sending_settle_stale(now=timezone.now() + timedelta(days=1)) == 0
    assert len(fake.requests) == 1  # the carrier saw it once; we never sent it again
    twilio_gateway._local.__dict__.clear()


def test_an_unreachable_carrier_is_retried(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        message = queue(tenant, subscribed(tenant), "a")
    with override_settings(TWILIO_API_BASE_URL="http://127.0.0.1:9"):  # nothing listens
        assert dispatch_due().retried == 1
    message.refresh_from_db()
    assert message.status == "queued" and message.attempts == 1


def test_the_same_dedupe_key_is_one_text(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        first = queue(tenant, subscriber, "once")
        second = queue(tenant, subscriber, "once")
    assert first.pk == second.pk
    dispatch_due()
    dispatch_due()
    assert len(fake.requests) == 1


def test_the_simulators_numbers_never_reach_a_real_carrier(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        tried = subscribed(tenant, TEST_NUMBERS[-1][0])  # tried in the simulator, then Twilio
        real = subscribed(tenant)
        to_tried = queue(tenant, tried, "tried")
        to_real = queue(tenant, real, "real")
    dispatch_due()
    to_tried.refresh_from_db()
    to_real.refresh_from_db()
    assert to_tried.status == MessageStatus.SUPPRESSED
    assert "phone simulator" in to_tried.status_reason
    assert to_real.status == MessageStatus.SENT
    assert [r.params["To"] for r in fake.requests] == [TO]


def test_unsubscribed_and_pending_numbers_get_no_marketing(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        gone = subscribed(tenant, "+12125550102")
        pending = subscriber_opt_in(
            tenant=tenant,
            phone="+12125550103",
            evidence=Evidence(source="web_form"),
            now=timezone.now(),
        )
        from messaging.services.subscribers import subscriber_opt_out

        subscriber_opt_out(
            subscriber=gone, evidence=Evidence(source="api"), now=timezone.now(), confirm=False
        )
        queue(tenant, gone, "m1", kind=MessageKind.MARKETING)
        queue(tenant, pending, "m2", kind=MessageKind.MARKETING)
        noon = (timezone.now() + timedelta(days=1)).replace(hour=17, minute=0)  # 13:00 in NY
        report = dispatch_due(now=lambda: noon)
    # Sent: the pending number's "Reply Y to confirm" only.
    assert (report.sent, report.suppressed) == (1, 2)
    assert [r.params["To"] for r in fake.requests] == ["+12125550103"]
    with tenant_scope(tenant):
        reasons = set(
            OutboundMessage.objects.filter(status="suppressed").values_list(
                "status_reason", flat=True
            )
        )
    assert reasons == {"unsubscribed", "not subscribed (pending)"}


@pytest.mark.django_db(transaction=True)  # sending threads have connections of their own
def test_each_second_holds_at_most_mps_sends(alice_brand, fake):
    tenant = alice_brand.tenant
    sender_connect_twilio(
        tenant=tenant, account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM, mps=10
    )
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        for n in range(25):
            queue(tenant, subscriber, f"p{n}")
    report = dispatch_due(concurrency=4)
    assert report.sent == 25
    times = sorted(r.received_monotonic for r in fake.requests)
    # As the carrier saw them, less 50 ms for the time two requests can take to arrive on a
    # busy 2-core machine: 11 sends evenly spaced over a second (a pacer one too generous)
    # still fall in 0.95 s and fail this.
    for i, start in enumerate(times):
        in_second = [t for t in times[i:] if t < start + 0.95]
        assert len(in_second) <= 10, [round(t - times[0], 3) for t in times]
    assert times[-1] - times[0] >= 2.0  # 25 at 10/s can't take less than 2.4 s


def test_a_slow_senders_backlog_does_not_hold_up_another_brand(
    alice_brand, charlie_brand, charlie_sender, fake
):
    from messaging.services import dispatch

    tenant = alice_brand.tenant
    sender_connect_twilio(
        tenant=tenant, account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM, mps=1
    )
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        for n in range(50):
            queue(tenant, subscriber, f"slow{n}")
    other = charlie_brand.tenant
    charlie_sender.mps = 1000
    charlie_sender.save()
    with tenant_scope(other):
        queue(other, subscribed(other, "+12125550177"), "fast")
    # One claim: charlie's text is in it although alice's 50 older ones are ahead in time,
    # and alice's sender gets only what it can send in CLAIM_SECONDS.
    claimed = dispatch._claim(timezone.now(), 200, dispatch.DispatchReport())
    to = [m.to for m in claimed]
    assert "+12125550177" in to
    assert to.count(TO) == dispatch.CLAIM_SECONDS * 1
    with tenant_scope(tenant):
        assert OutboundMessage.objects.filter(status="queued").count() == 50 - 10


def test_the_dispatcher_stops_claiming_at_its_time_limit(alice_brand, twilio_sender, fake):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        for n in range(5):
            queue(tenant, subscriber, f"t{n}")
    report = dispatch_due(batch=2, max_seconds=0)
    assert report.unfinished and report.claimed == 0
    report = dispatch_due(batch=2, max_seconds=60)
    assert not report.unfinished and report.sent == 5


def test_unknown_outcomes_are_settled_by_asking_the_carrier(
    alice_brand, twilio_sender, fake, monkeypatch
):
    from messaging.gateways import twilio as twilio_gateway
    from messaging.services.dispatch import unknown_reconcile

    monkeypatch.setattr(twilio_gateway, "TIMEOUT", 0.5)
    twilio_gateway._local.__dict__.clear()
    tenant = alice_brand.tenant
    fake.set_behaviour(TO, "timeout")
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        reached = queue(tenant, subscriber, "reached")
    assert dispatch_due().unknown == 1  # the carrier took it, but its answer was lost
    fake.set_behaviour(TO, "ok")
    with tenant_scope(tenant):
        never = queue(tenant, subscribed(tenant, "+12125550109"), "never")
    # The second: as if the dispatcher died before its request left.
    OutboundMessage.objects.unscoped().filter(pk=never.pk).update(
        status="unknown", sending_at=timezone.now(), sender=twilio_sender
    )
    twilio_gateway._local.__dict__.clear()
    later = timezone.now() + timedelta(minutes=2)
    assert unknown_reconcile(now=later) == 1
    reached.refresh_from_db()
    assert reached.status == "sent"
    assert reached.carrier_sid == fake.sent_to(TO)[0]["sid"]
    never.refresh_from_db()
    assert never.status == "unknown" and never.status_reason.startswith("not found")
    assert unknown_reconcile(now=later) == 0  # asked once
    assert len([r for r in fake.requests if r.method == "POST"]) == 1  # nothing re-sent
    twilio_gateway._local.__dict__.clear()


@pytest.mark.django_db(transaction=True)  # two claims need two connections
def test_concurrent_claims_share_one_senders_backlog(alice_brand, twilio_sender):
    import threading

    from django.db import connection

    from messaging.services import dispatch

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        subscriber = subscribed(tenant)
        for n in range(60):
            queue(tenant, subscriber, f"c{n}")
    first_claimed = threading.Event()
    release = threading.Event()
    claims = {}

    def claim(name, hold):
        try:
            from django.db import transaction

            with transaction.atomic():
                claims[name] = dispatch._claim(timezone.now(), 20, dispatch.DispatchReport())
                if hold:
                    first_claimed.set()
                    release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=claim, args=("first", True))
    holder.start()
    first_claimed.wait(10)
    claim("second", False)  # while the first claim's transaction is still open
    release.set()
    holder.join()
    first = {m.pk for m in claims["first"]}
    second = {m.pk for m in claims["second"]}
    assert len(first) == len(second) == 20 and not first & second


def test_a_sender_served_by_another_dispatcher_is_left_to_it(alice_brand, twilio_sender, fake):
    from messaging.ratelimit import SenderLease

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        queue(tenant, subscribed(tenant), "a")
    elsewhere = SenderLease(twilio_sender.pk)
    assert elsewhere.acquire()
    try:
        assert dispatch_due().claimed == 0
        assert fake.requests == []
    finally:
        elsewhere.release([])
    assert dispatch_due().sent == 1


def test_a_lease_passes_its_last_second_of_sends_to_the_next_holder(twilio_sender):
    import asyncio
    import time

    from messaging.ratelimit import WINDOW, Pacer, SenderLease

    first = SenderLease(twilio_sender.pk)
    assert first.acquire()
    recent = [time.time() - 0.9 + n * 0.01 for n in range(10)]  # 10 sends, the last 0.8 s ago
    first.release(recent)
    second = SenderLease(twilio_sender.pk)
    assert second.acquire()
    pacer = Pacer(10, second.recent_sends())
    second.release([])

    async def one_more() -> float:
        await pacer.until(pacer.reserve(1)[0])
        return time.time()

    sent = asyncio.run(one_more())
    # The 11th send of that second waits until the first of the ten leaves the window.
    assert sent >= recent[0] + WINDOW


def test_each_pacer_window_holds_at_most_mps_sends():
    import asyncio

    from messaging.ratelimit import WINDOW, Pacer

    pacer = Pacer(50)

    async def burst() -> list[float]:
        times = []
        # Slots handed out late (as after a slow claim) are caught up on, but never past
        # the window's limit.
        slots = pacer.reserve(120)
        await asyncio.sleep(0.2)
        for slot in slots:
            await pacer.until(slot)
            # The moment the pacer let it go, as it recorded it (a clock read here could
            # come later on a busy machine, and crowd the next window's count).
            times.append(pacer.sent[-1])
        return times

    times = asyncio.run(burst())
    for i, start in enumerate(times):
        assert len([t for t in times[i:] if t < start + WINDOW]) <= 50
    assert 2 * WINDOW <= times[-1] - times[0] <= 120 / 50 + 0.3  # sends 0, 50 and 100


@pytest.mark.django_db(transaction=True)  # dispatchers in threads, each its own connection
def test_two_dispatchers_on_one_sender_never_exceed_its_mps(alice_brand, fake):
    import threading
    import time

    from django.db import connection

    tenant = alice_brand.tenant
    sender_connect_twilio(
        tenant=tenant, account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM, mps=10
    )
    with tenant_scope(tenant):
        for n in range(30):
            queue(tenant, subscribed(tenant, f"+1212555{n:04d}"), f"two{n}")
    sent = {}

    def first():  # claims for 0.8 s, then hands the sender over with texts still due
        try:
            sent["first"] = dispatch_due(concurrency=2, max_seconds=0.8).sent
        finally:
            connection.close()

    def second():  # polls like beat, and takes over as soon as the lease is free
        from messaging.models import DUE_STATUSES

        time.sleep(0.3)
        sent["second"] = 0
        try:
            while OutboundMessage.objects.unscoped().filter(status__in=DUE_STATUSES).exists():
                sent["second"] += dispatch_due(concurrency=2).sent
                time.sleep(0.01)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 < sent["first"] < 30 and sent["first"] + sent["second"] == 30
    times = sorted(r.received_monotonic for r in fake.requests)
    assert len(times) == 30
    for i, start in enumerate(times):
        in_second = [t for t in times[i:] if t < start + 1.0]
        assert len(in_second) <= 10, [round(t - times[0], 3) for t in times]


def test_a_send_waits_for_a_free_request_before_it_counts_as_sent():
    import asyncio
    import time

    from messaging.ratelimit import Pacer

    pacer = Pacer(1000, concurrency=2)
    in_flight, most, started = 0, 0, []

    async def request():
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1

    async def send_all():
        tasks = []
        for slot in pacer.reserve(6):
            await pacer.until(slot)
            started.append(time.time())
            task = asyncio.ensure_future(request())
            task.add_done_callback(lambda _: pacer.finished())
            tasks.append(task)
        await asyncio.gather(*tasks)

    asyncio.run(send_all())
    assert most == 2
    # Counted when it really left: pairs 0.1 s apart, not six at once.
    assert started[-1] - started[0] >= 0.2


def test_answers_to_people_go_before_a_campaign_backlog(alice_brand, twilio_sender, fake):
    from messaging.services import dispatch

    tenant = alice_brand.tenant
    noon = (timezone.now() + timedelta(days=1)).replace(hour=17, minute=0)  # 13:00 in NY
    with tenant_scope(tenant):
        for n in range(30):
            queue(
                tenant, subscribed(tenant, f"+1212555{n:04d}"), f"m{n}", kind=MessageKind.MARKETING
            )
        answer = queue(tenant, subscribed(tenant, "+12125559999"), "answer")
    # The answer was queued last; the first small claim still takes it.
    claimed = dispatch._claim(noon, 5, dispatch.DispatchReport(), sender_ids=[twilio_sender.pk])
    assert answer.pk in {m.pk for m in claimed} and len(claimed) == 5
    assert len({m.pk for m in claimed}) == 5


def test_a_batch_that_fails_before_its_first_request_goes_back_to_the_queue(
    alice_brand, twilio_sender, fake, monkeypatch
):
    from messaging.services import dispatch

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        message = queue(tenant, subscribed(tenant), "a")

    def broken(message):
        raise RuntimeError("misconfigured")

    monkeypatch.setattr(dispatch, "status_callback_url", broken)
    with pytest.raises(RuntimeError):
        dispatch_due()
    message.refresh_from_db()
    assert (message.status, message.attempts, message.sending_at) == ("queued", 0, None)
    assert fake.requests == []
    monkeypatch.undo()
    assert dispatch_due().sent == 1
