"""Issue 9, first fault: a 10,000-text campaign sent by real Celery workers that are killed
(kill -9, the whole process group) every few seconds and restarted, with the broker's Redis
restarted once mid-way. Afterwards: no text lost, none sent twice, `unknown` bounded."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from chaos.processes import Workers

TEXTS = 10_000
MPS = 100  # the sandbox sender's pace: ~100 s of sending, long enough for the kills
KILLS = 4
KILL_EVERY = 12.0  # seconds between kills (the first after the sending has begun)
REDIS_RESTART_AFTER_KILL = 2  # the broker's Redis restarts after this kill
OVERALL_TIMEOUT = 600.0
FINAL = {"delivered", "undelivered", "failed", "suppressed", "canceled", "expired"}

SEED = """
INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    timezone, tags, enrolled_at, points_balance, points_pending, lifetime_points,
    lifetime_spend, orders_count, last_activity_at, tier_id, sms_status, created_at,
    updated_at)
SELECT %(tenant)s, 'm' || n, NULL, '', 'Ana', 'Lee', '', '{}', %(now)s, 0, 0, 0, 0, 0,
       %(now)s, NULL, 'subscribed', %(now)s, %(now)s
FROM generate_series(1, %(members)s) AS n;

INSERT INTO messaging_subscriber (tenant_id, phone, member_id, status, source, timezone,
    timezone_candidates, region, country, subscribed_at, unread_count, needs_attention,
    created_at, updated_at)
SELECT %(tenant)s, '+1212' || lpad(n::text, 7, '0'), n + %(first_member)s - 1, 'subscribed',
       'checkout', 'America/New_York', '{}', 'NY', 'US', %(now)s, 0, FALSE, %(now)s, %(now)s
FROM generate_series(1, %(members)s) AS n;
"""


def seed() -> tuple[int, int]:
    """The brand (sandbox sender), 10,000 subscribed members, a campaign to them all."""
    from django.db import connection

    from automations.models import Campaign
    from automations.services.campaigns import campaign_create
    from loyaltysms.services import tenant_create
    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import SenderKind
    from messaging.services.setup import sender_default
    from segments.services import segment_create

    tenant = tenant_create(
        slug="chaos",
        name="Chaos",
        owner_email="chaos@chaos.test",
        owner_password="chaos-password-123",  # noqa: S106 - a throwaway database
    ).tenant
    now = datetime.now(UTC).replace(microsecond=0)
    with tenant_scope(tenant):
        sender = sender_default(tenant)
        assert sender.kind == SenderKind.SANDBOX
        sender.mps = MPS
        sender.save(update_fields=["mps"])
        segment = segment_create(
            tenant=tenant,
            name="Subscribed",
            rules={"field": "sms_status", "op": "is", "value": "subscribed"},
            now=now,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM programs_member")
        first_member = cursor.fetchone()[0]
        params = {"tenant": tenant.pk, "now": now, "members": TEXTS, "first_member": first_member}
        cursor.execute(SEED, params)
        cursor.execute("ANALYZE")
    with tenant_scope(tenant):
        campaign = campaign_create(
            tenant=tenant,
            now=now,
            name="Chaos",
            body="Hi {first_name|there}, double points this weekend!",
            segment_ids=[segment.pk],
            send_mode="at",
            send_at=now,
        )
        Campaign.objects.filter(pk=campaign.pk).update(status="scheduled")
    return tenant.pk, campaign.pk


def counts() -> Counter:
    from messaging.models import OutboundMessage

    rows = OutboundMessage.objects.unscoped().values_list("status", flat=True)
    return Counter(rows)


def wake(tenant_id: int, campaign_id: int) -> None:
    """What beat would do, faster: carry on the launch (idempotent) and wake the dispatcher.
    A task a killed worker held stays unacked until the visibility timeout (an hour), so the
    next wake-up is what carries on."""
    from automations.tasks import campaign_launch
    from messaging.tasks import dispatch_due

    try:
        campaign_launch.delay(tenant_id, campaign_id)
        dispatch_due.delay()
    except Exception as exc:
        print(f"wake-up not sent: {exc!r}")


def test_campaign_survives_killed_workers_and_a_redis_restart(chaos_env, private_redis, workdir):
    import redis
    from django.db import connections
    from django.utils import timezone

    from messaging.gateways.sandbox import RECEIPTS_KEY
    from messaging.models import OutboundMessage
    from messaging.services.dispatch import STALE_SENDING, sending_settle_stale
    from messaging.services.status import sandbox_receipts_deliver

    began = time.monotonic()
    tenant_id, campaign_id = seed()
    workers = Workers(chaos_env, workdir)
    log: list[str] = []
    outcome: dict = {}

    def diagnostics() -> str:
        tails = []
        for path in sorted(workdir.glob("worker-*.log")):
            tails.append(f"--- {path.name}\n" + "".join(path.read_text().splitlines(True)[-15:]))
        return f"statuses {dict(counts())}; events {log}\n" + "\n".join(tails)

    try:
        workers.start()
        wake(tenant_id, campaign_id)
        next_kill = None
        last_wake = time.monotonic()
        while True:
            elapsed = time.monotonic() - began
            assert elapsed < OVERALL_TIMEOUT, f"timed out after {elapsed:.0f} s: {diagnostics()}"
            connections.close_all()
            status = counts()
            total = sum(status.values())
            pending = status["queued"] + status["deferred"] + status["sending"]
            # Kills once the texts are being sent; the last kill leaves the worker running.
            if next_kill is None and status["sent"] + status["delivered"] > 0:
                next_kill = time.monotonic() + KILL_EVERY / 2
            if next_kill is not None and workers.kills < KILLS and time.monotonic() >= next_kill:
                workers.kill()
                log.append(f"kill {workers.kills} at {elapsed:.0f}s ({dict(status)})")
                if workers.kills == REDIS_RESTART_AFTER_KILL:
                    private_redis.restart()
                    log.append(f"redis restart at {time.monotonic() - began:.0f}s")
                workers.start()
                wake(tenant_id, campaign_id)
                next_kill = time.monotonic() + KILL_EVERY
            if time.monotonic() - last_wake > 3:
                wake(tenant_id, campaign_id)
                last_wake = time.monotonic()
            if (
                workers.kills >= KILLS
                and total == TEXTS
                and status["queued"] == 0
                and (status["deferred"] == 0 and pending == status["sending"])
            ):
                # Nothing due; what is still `sending` is a dead dispatcher's (or the live
                # one's last batch: give it a moment to record it).
                time.sleep(3)
                if counts()["sending"] == status["sending"]:
                    break
            time.sleep(1)
    finally:
        workers.stop()

    # A dead dispatcher's texts still `sending`: settled as the beat task would be ten minutes
    # on (the clock moved past STALE_SENDING instead of waiting for it).
    settled = sending_settle_stale(now=timezone.now() + STALE_SENDING + timedelta(seconds=1))
    log.append(f"settled stale sending: {settled}")

    # What the sandbox took: each text it accepted has its receipts (one `sent`, one final)
    # in Redis under the carrier sid it was given. Read before they are delivered.
    client = redis.Redis.from_url(private_redis.url)
    receipts = [json.loads(item) for item in client.zrange(RECEIPTS_KEY, 0, -1)]
    sids_per_text: dict[int, set[str]] = {}
    for _tenant, message_id, sid, _status, _code in receipts:
        sids_per_text.setdefault(message_id, set()).add(sid)
    texts = {
        pk: (to, sid, status)
        for pk, to, sid, status in OutboundMessage.objects.unscoped().values_list(
            "pk", "to", "carrier_sid", "status"
        )
    }
    sent_twice = [pk for pk, sids in sids_per_text.items() if len(sids) > 1]
    per_number = Counter(texts[pk][0] for pk in sids_per_text if pk in texts)
    numbers_twice = [number for number, n in per_number.items() if n > 1]
    mismatched = [
        pk for pk, sids in sids_per_text.items() if texts.get(pk, (0, None))[1] not in sids
    ]

    # The receipts, delivered as beat's sandbox task would (all due within a few seconds).
    deadline = time.monotonic() + 30
    while client.zcard(RECEIPTS_KEY) and time.monotonic() < deadline:
        sandbox_receipts_deliver(until=time.time() + 10)
    final = counts()
    lost = TEXTS - sum(n for status, n in final.items() if status in FINAL | {"unknown"})
    outcome.update(
        texts=sum(final.values()),
        statuses=dict(final),
        lost=lost,
        sent_twice=len(sent_twice),
        numbers_twice=len(numbers_twice),
        unknown=final["unknown"],
        kills=workers.kills,
        redis_restarts=private_redis.restarts,
        seconds=round(time.monotonic() - began),
    )
    print("\nchaos: 10,000-text campaign, workers kill -9'd, Redis restarted")
    for key, value in outcome.items():
        print(f"  {key:<15} {value}")
    for line in log:
        print(f"  event: {line}")

    assert outcome["texts"] == TEXTS, diagnostics()
    assert lost == 0, f"{lost} texts not final nor unknown: {final}"
    assert not sent_twice, f"sent twice: {sent_twice[:20]}"
    assert not numbers_twice, f"numbers texted twice: {numbers_twice[:20]}"
    assert not mismatched, f"receipts for a sid the text doesn't record: {mismatched[:20]}"
    assert workers.kills == KILLS and private_redis.restarts == 1
    assert final["unknown"] <= workers.kills, f"unknown {final['unknown']} > kills {KILLS}"
