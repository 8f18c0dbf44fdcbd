"""A STOP that arrives while a 10,000-text send is under way (real dispatcher with sending
threads, sandbox gateway): once the STOP is acknowledged, nothing more goes to that number."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client

from loyaltysms.tenancy.context import tenant_scope
from messaging.gateways import sandbox
from messaging.models import MessageKind, OutboundMessage, Subscriber
from messaging.ratelimit import redis_client
from messaging.services.dispatch import dispatch_due
from messaging.services.setup import messaging_settings_get

from .conftest import Phone

TOTAL = 10_000
STOPPER = "+12125559999"
NOON = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York: inside the window


def bulk_audience(tenant, sender, total: int = TOTAL) -> None:
    """`total` queued texts (10,000): one text to each of 99 % of the subscribers, and 1 %
    order updates to the number that will text STOP, spread evenly through the queue.

    Built with bulk inserts: creating them one by one through the services would only make
    the test slower, and the dispatcher reads nothing else from them."""
    settings_ = messaging_settings_get(tenant)
    common = {"tenant": tenant, "source": "import", "region": "NY", "country": "US"}
    subscribers = Subscriber.objects.bulk_create(
        [
            Subscriber(
                phone=f"+1212{n:07d}",
                status="subscribed",
                timezone="America/New_York",
                subscribed_at=NOON - timedelta(days=1),
                **common,
            )
            for n in range(total - total // 100)
        ]
        + [
            Subscriber(
                phone=STOPPER,
                status="subscribed",
                timezone="America/New_York",
                subscribed_at=NOON - timedelta(days=1),
                **common,
            )
        ]
    )
    stopper = subscribers[-1]
    messages = []
    for n in range(total):
        to_stopper = n % 100 == 50
        subscriber = stopper if to_stopper else subscribers[n - n // 100 - (n % 100 > 50)]
        body = f"Order #{n} has shipped" if to_stopper else "Double points all weekend!"
        messages.append(
            OutboundMessage(
                tenant=tenant,
                subscriber=subscriber,
                sender=sender,
                to=str(subscriber.phone),
                # One kind for all: answers to people are claimed before marketing, and
                # the stopper's texts must stay spread through the send.
                kind=MessageKind.TRANSACTIONAL,
                source="test",
                dedupe_key=f"bulk:{n}",
                body=body,
                encoding="GSM-7",
                segments=1,
                price_estimate=settings_.price_per_segment,
                send_after=NOON - timedelta(seconds=1) + timedelta(microseconds=n),
                created_at=NOON,
            )
        )
    OutboundMessage.objects.bulk_create(messages, batch_size=2000)


@pytest.mark.django_db(transaction=True)
def test_stop_mid_send_stops_every_later_text_to_that_number(
    alice_brand, alice_sender, monkeypatch
):
    tenant = alice_brand.tenant
    alice_sender.mps = 5000
    alice_sender.save()
    with tenant_scope(tenant):
        bulk_audience(tenant, alice_sender)

    # The carrier's view: when each text to the stopping number was handed over.
    handed_over: list[tuple[float, str]] = []
    original_send = sandbox.SandboxGateway.send_async

    async def send_async(self, message):
        if message.to == STOPPER:
            handed_over.append((time.monotonic(), message.body))
        return await original_send(self, message)

    monkeypatch.setattr(sandbox.SandboxGateway, "send_async", send_async)

    outcome = []

    def run_dispatcher():
        try:
            outcome.append(dispatch_due(now=lambda: NOON, concurrency=4))
        except Exception as exc:  # shown by the assertion below
            outcome.append(exc)
        finally:
            from django.db import connection

            connection.close()

    dispatcher = threading.Thread(target=run_dispatcher)
    dispatcher.start()
    # STOP once a good part of the send has gone out.
    while len(handed_over) < 30:
        time.sleep(0.01)
        assert dispatcher.is_alive() or len(handed_over) >= 30, f"the send ended: {outcome}"
    Phone(STOPPER, alice_sender, Client()).text("STOP")
    acknowledged = time.monotonic()
    dispatcher.join(timeout=600)
    assert not dispatcher.is_alive()

    with tenant_scope(tenant):
        to_stopper = OutboundMessage.objects.filter(to=STOPPER, source="test")
        sent_before = to_stopper.filter(status="sent").count()
        suppressed = to_stopper.filter(status="suppressed").count()
        assert Subscriber.objects.get(phone=STOPPER).status == "unsubscribed"
        others_sent = OutboundMessage.objects.exclude(to=STOPPER).filter(status="sent").count()

    order_updates = [(t, body) for t, body in handed_over if body.startswith("Order")]
    assert all(t < acknowledged for t, _ in order_updates), "a text went out after the STOP"
    assert sent_before == len(order_updates) >= 30
    assert suppressed == 100 - sent_before > 0  # the STOP really landed mid-send
    assert others_sent == TOTAL - 100
    # The one text after the STOP is its confirmation.
    after = [body for t, body in handed_over if t >= acknowledged]
    assert len(after) <= 1 and all("unsubscribed" in body for body in after)
    redis_client(settings.REDIS_URL).delete(sandbox.RECEIPTS_KEY)
