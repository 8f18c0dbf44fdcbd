"""What a dispatcher handed over, known when it dies (messaging.handover): a real dispatcher
process killed with kill -9 mid-batch, and a batch whose marks can no longer be written.
Afterwards every text is sent once or settled, none twice, and only texts marked but not yet
taken by the carrier can end `unknown`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from messaging import handover
from messaging.gateways import sandbox
from messaging.models import Handover, MessageKind, OutboundMessage, Subscriber
from messaging.ratelimit import Pacer, SenderLease, redis_client
from messaging.services.dispatch import STALE_SENDING, dispatch_due, sending_settle_stale
from messaging.services.setup import messaging_settings_get
from messaging.services.status import sandbox_receipts_deliver

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"delivered", "undelivered", "failed", "suppressed", "canceled", "expired"}
# The dispatcher of test 1, in a process of its own: two lanes, as a Celery worker runs it.
# The same settings as this process (whatever server they name), on the test database.
DISPATCHER = """
import os
import django
django.setup()
from django.db import connections
connections["default"].settings_dict["NAME"] = os.environ["DISPATCHER_DATABASE"]
from messaging.services.dispatch import dispatch_due
dispatch_due(concurrency=2)
"""


def queue_texts(tenant, sender, count: int) -> None:
    """`count` due order updates, each to a number of its own (so a number texted twice is a
    text sent twice)."""
    now = timezone.now()
    price = messaging_settings_get(tenant).price_per_segment
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(
            tenant=tenant,
            phone=f"+1212{n:07d}",
            status="subscribed",
            source="import",
            region="NY",
            country="US",
            timezone="America/New_York",
            subscribed_at=now - timedelta(days=1),
        )
        for n in range(count)
    )
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            tenant=tenant,
            subscriber=subscriber,
            sender=sender,
            to=str(subscriber.phone),
            kind=MessageKind.TRANSACTIONAL,
            source="test",
            dedupe_key=f"order:{n}",
            body=f"Order #{n} has shipped",
            encoding="GSM-7",
            segments=1,
            price_estimate=price,
            send_after=now - timedelta(seconds=1) + timedelta(microseconds=n),
            created_at=now,
        )
        for n, subscriber in enumerate(subscribers)
    )


def taken_by_the_sandbox(tenant_id: int) -> dict[int, set[str]]:
    """The carrier's side: each text the sandbox took, with the sids it gave it."""
    client = redis_client(settings.REDIS_URL)
    taken: dict[int, set[str]] = {}
    for item in client.zrange(sandbox.RECEIPTS_KEY, 0, -1):
        receipt_tenant, message_id, sid, _status, _code = json.loads(item)
        if receipt_tenant == tenant_id:
            taken.setdefault(message_id, set()).add(sid)
    return taken


def statuses(tenant) -> Counter:
    with tenant_scope(tenant):
        return Counter(OutboundMessage.objects.values_list("status", flat=True))


def test_a_dispatcher_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    alice_brand, alice_sender
):
    tenant = alice_brand.tenant
    alice_sender.mps = 40  # claims of 20 texts, half a second each
    alice_sender.save()
    with tenant_scope(tenant):
        queue_texts(tenant, alice_sender, 200)
    redis_client(settings.REDIS_URL).delete(sandbox.RECEIPTS_KEY)

    env = {
        **os.environ,
        "DISPATCHER_DATABASE": connection.settings_dict["NAME"],
        "DB_CONN_MAX_AGE": "0",
    }
    dispatcher = subprocess.Popen(
        [sys.executable, "-c", DISPATCHER], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while len(taken_by_the_sandbox(tenant.pk)) < 50:  # into its third claim
            assert dispatcher.poll() is None, "the dispatcher ended before it was killed"
            assert time.monotonic() < deadline, "the dispatcher sent nothing"
            time.sleep(0.02)
    finally:
        os.killpg(dispatcher.pid, signal.SIGKILL)
        dispatcher.wait()

    # Settled as beat's task would be, STALE_SENDING later (the dead process's rows are
    # unlocked as soon as PostgreSQL sees its connections close).
    later = timezone.now() + STALE_SENDING + timedelta(seconds=1)
    deadline = time.monotonic() + 20
    while statuses(tenant)["sending"]:
        assert time.monotonic() < deadline, statuses(tenant)
        sending_settle_stale(now=later)
        time.sleep(0.1)
    taken = taken_by_the_sandbox(tenant.pk)
    with tenant_scope(tenant):
        texts = OutboundMessage.objects.values_list("pk", flat=True)
        queued = set(texts.filter(status="queued"))
        requeued = set(texts.filter(status="queued", status_reason__contains="stopped before"))
        unknown = set(texts.filter(status="unknown"))
    assert requeued, "the kill found no claim under way"
    assert not requeued & set(taken), "a text the carrier took was queued again"
    assert len(unknown - set(taken)) <= 2  # marked, not yet taken: one per lane at most
    assert not Handover.objects.filter(message_id__in=requeued | unknown).exists()

    # The next dispatcher (once the dead one's lease has run out) sends what is queued,
    # again or still; the receipts settle the rest.
    redis_client(settings.REDIS_URL).delete(SenderLease(alice_sender.pk).key)
    assert dispatch_due(concurrency=2).sent == len(queued)
    taken = taken_by_the_sandbox(tenant.pk)
    sandbox_receipts_deliver(until=time.time() + 10)
    final = statuses(tenant)
    assert sum(final.values()) == 200
    assert set(final) <= FINAL | {"unknown"}, final
    assert final["unknown"] <= 2
    assert all(len(sids) == 1 for sids in taken.values()), "a text was sent twice"
    with tenant_scope(tenant):
        numbers = Counter(OutboundMessage.objects.filter(pk__in=taken).values_list("to", flat=True))
    assert max(numbers.values()) == 1
    assert len(taken) >= 200 - final["unknown"]


def terminate_marks() -> None:
    """Ends the marks' database connections, as a failover or an administrator would."""
    db = connection.settings_dict
    admin = psycopg2.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"])
    admin.autocommit = True
    with admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [handover.APPLICATION],
        )
    admin.close()


def test_a_batch_whose_marks_fail_stops_and_its_unsent_texts_go_later(
    alice_brand, alice_sender, monkeypatch
):
    tenant = alice_brand.tenant
    alice_sender.mps = 200
    alice_sender.save()
    with tenant_scope(tenant):
        queue_texts(tenant, alice_sender, 100)
    redis_client(settings.REDIS_URL).delete(sandbox.RECEIPTS_KEY)
    taken = []
    original_send = sandbox.SandboxGateway.send_async

    async def send_async(self, message):
        taken.append(message.message_id)
        if len(taken) == 10:
            terminate_marks()  # the next mark fails: the rest of this batch must not leave
        return await original_send(self, message)

    monkeypatch.setattr(sandbox.SandboxGateway, "send_async", send_async)

    report = dispatch_due()
    assert report.not_handed_over > 0 and report.unknown == 0
    with tenant_scope(tenant):
        again = OutboundMessage.objects.filter(status="queued")
        assert again.count() == 100 - report.sent  # the rest waits, none lost
        assert min(again.values_list("send_after", flat=True)) > timezone.now()  # backed off
    assert sorted(taken) == sorted(set(taken)) and len(taken) == report.sent

    later = dispatch_due(now=lambda: timezone.now() + timedelta(minutes=1))
    assert report.sent + later.sent == 100 and statuses(tenant) == {"sent": 100}
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 100
    assert all(len(sids) == 1 for sids in taken_by_the_sandbox(tenant.pk).values())


def test_every_text_is_marked_before_its_request_leaves(alice_brand, alice_sender, monkeypatch):
    tenant = alice_brand.tenant
    alice_sender.mps = 500
    alice_sender.save()
    with tenant_scope(tenant):
        queue_texts(tenant, alice_sender, 60)
    db = connection.settings_dict
    observer = psycopg2.connect(
        dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"]
    )
    observer.autocommit = True
    unmarked = []
    original_send = sandbox.SandboxGateway.send_async

    async def send_async(self, message):
        # What another connection sees at the moment the request leaves.
        with observer.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM messaging_handover h JOIN messaging_outboundmessage m "
                "ON m.id = h.message_id AND m.claim = h.claim WHERE h.message_id = %s",
                [message.message_id],
            )
            if cursor.fetchone() is None:
                unmarked.append(message.message_id)
        return await original_send(self, message)

    monkeypatch.setattr(sandbox.SandboxGateway, "send_async", send_async)
    try:
        assert dispatch_due().sent == 60
    finally:
        observer.close()
    assert unmarked == []
    assert not Handover.objects.exists()  # each batch removed its marks once recorded


def test_a_stalled_batch_never_sends_a_text_settled_and_claimed_again(alice_brand, alice_sender):
    """A dispatcher that stalled between its claim and its send (past STALE_SENDING) finds its
    texts settled and claimed by another dispatcher: it sends none of them."""
    from messaging.services.dispatch import DispatchReport, _claim, _send_batch

    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        queue_texts(tenant, alice_sender, 3)
    redis_client(settings.REDIS_URL).delete(sandbox.RECEIPTS_KEY)
    now = timezone.now()
    stalled = _claim(now, 10, DispatchReport(), sender_ids=[alice_sender.pk])
    assert len(stalled) == 3
    # Ten minutes on: settled (never marked: back in the queue), then claimed again.
    assert sending_settle_stale(now=now + STALE_SENDING + timedelta(seconds=1)) == 3
    again = _claim(now, 10, DispatchReport(), sender_ids=[alice_sender.pk])
    assert {m.claim for m in again} != {m.claim for m in stalled}

    pacer = Pacer(1000)
    with handover.Marker() as marker:
        late = _send_batch(stalled, alice_sender, pacer, marker, time.monotonic() + 60)
        assert late.sent == 0 and taken_by_the_sandbox(tenant.pk) == {}
        current = _send_batch(again, alice_sender, pacer, marker, time.monotonic() + 60)
    assert current.sent == 3 and statuses(tenant) == {"sent": 3}
    assert all(len(sids) == 1 for sids in taken_by_the_sandbox(tenant.pk).values())


def test_the_pacer_counts_a_send_when_it_leaves_after_its_preparation():
    """`prepare` (the mark) runs at the slot; the send time recorded is after it, and the
    window cap is checked again; a failed preparation records nothing."""
    import asyncio

    async def scenario():
        pacer = Pacer(2)  # 2 a second: slots ~0.5 s apart, at most 2 in any 1.01 s
        first, second, third = pacer.reserve(3)
        prepared = []

        async def slow_mark():
            await asyncio.sleep(0.3)
            prepared.append(time.time())

        await pacer.until(first)
        await pacer.until(second, prepare=slow_mark)
        assert pacer.sent[-1] >= prepared[0]  # counted when it leaves, after the mark

        async def failing_mark():
            raise OSError("no database")

        with pytest.raises(OSError):
            await pacer.until(third, prepare=failing_mark)
        assert len(pacer.sent) == 2 and pacer.in_flight == 2  # nothing recorded for it
        # The cap, counted from the real send times: a third send waits for the window.
        oldest = pacer.sent[0]
        await pacer.until(third)
        assert time.time() >= oldest + 1.01 - 0.005

    asyncio.run(scenario())


def test_a_sender_behind_its_pace_still_marks_one_text_at_a_time(
    alice_brand, alice_sender, monkeypatch
):
    """At 100 texts/s each commit marks one text, also once the sender has fallen behind (a
    slow mark): a crash then strands at most one text marked and not yet sent per lane."""
    tenant = alice_brand.tenant
    alice_sender.mps = 100
    alice_sender.save()
    with tenant_scope(tenant):
        queue_texts(tenant, alice_sender, 30)
    groups = []
    original_mark = handover.Marker.mark

    def mark(self, texts):
        groups.append(len(texts))
        if len(groups) == 3:
            time.sleep(0.2)  # a slow commit: the next ~20 slots are now past
        original_mark(self, texts)

    monkeypatch.setattr(handover.Marker, "mark", mark)
    assert dispatch_due().sent == 30
    assert sum(groups) == 30 and max(groups) == 1
