"""A 10,000-text campaign sent by real Celery workers through faults, and the ledger of what
the carrier (the sandbox) took: the part the fault tests share.

`CampaignRun.send(fault)` starts a worker, wakes the launch and the dispatcher every few
seconds (as beat would, faster), calls `fault(run, statuses)` on every poll — the test kills
and restarts what it likes there — and ends once the faults are done and every text is
settled: texts a dead dispatcher left `sending` are settled by `sending_settle_stale` with the
clock moved past STALE_SENDING (what beat's `settle_stale_sends` does ten minutes later), and
those it never handed over are sent by the live worker. `verify()` then reads what the sandbox
took from Redis (each text it took has receipts under the carrier sid it gave), delivers the
receipts and checks: exactly 10,000 texts, none lost (each final or `unknown`), none sent
twice, `unknown` no more than the faults.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaos.processes import Workers

TEXTS = 10_000
MPS = 100  # the sandbox sender's pace: ~100 s of sending, long enough for the faults
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
SELECT %(tenant)s, '+1212' || lpad(n::text, 7, '0'), m.id, 'subscribed',
       'checkout', %(zone)s, '{}', 'NY', 'US', %(now)s, 0, FALSE, %(now)s, %(now)s
FROM generate_series(1, %(members)s) AS n
JOIN programs_member m ON m.tenant_id = %(tenant)s AND m.external_id = 'm' || n;
"""


# Where the subscribers live: the first zone where it is daytime now (9:00-19:00, well inside
# the 8:00-21:00 sending window for the test's minutes), so a run at any hour sends at once.
ZONES = (
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
)


def daytime_zone(now: datetime) -> str:
    from zoneinfo import ZoneInfo

    return next(zone for zone in ZONES if 9 <= now.astimezone(ZoneInfo(zone)).hour < 19)


def seed(slug: str) -> tuple[int, int]:
    """A brand (sandbox sender at MPS), 10,000 subscribed members, a campaign to them all."""
    from django.db import connection

    from automations.models import Campaign
    from automations.services.campaigns import campaign_create
    from loyaltysms.services import tenant_create
    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import SenderKind
    from messaging.services.setup import sender_default
    from segments.services import segment_create

    tenant = tenant_create(
        slug=slug,
        name=slug.title(),
        owner_email=f"{slug}@chaos.test",
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
        params = {"tenant": tenant.pk, "now": now, "members": TEXTS, "zone": daytime_zone(now)}
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


class CampaignRun:
    def __init__(self, *, env: dict, workdir: Path, redis_url: str, slug: str):
        self.redis_url = redis_url
        self.tenant_id, self.campaign_id = seed(slug)
        self.workers = Workers(env, workdir, name=slug)
        self.workdir, self.slug = workdir, slug
        self.began = time.monotonic()
        self.log: list[str] = []
        self.faults = 0  # counted by the test's fault function
        self.requeued = 0  # texts a dead dispatcher never handed over, queued again

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def event(self, text: str) -> None:
        self.log.append(f"{self.elapsed():.0f}s {text}")

    def statuses(self) -> Counter:
        """Our texts' statuses; while the database is away, an empty Counter."""
        from django.db import connections

        from messaging.models import OutboundMessage

        connections.close_all()
        try:
            rows = OutboundMessage.objects.unscoped().filter(tenant_id=self.tenant_id)
            return Counter(rows.values_list("status", flat=True))
        except Exception as exc:
            self.event(f"statuses not read: {type(exc).__name__}")
            return Counter()

    def wake(self) -> None:
        """What beat would do, faster: carry on the launch (idempotent) and wake the
        dispatcher. A task a killed worker held stays unacked until the visibility timeout
        (an hour), so the next wake-up is what carries on."""
        from automations.tasks import campaign_launch
        from messaging.tasks import dispatch_due

        try:
            campaign_launch.delay(self.tenant_id, self.campaign_id)
            dispatch_due.delay()
        except Exception as exc:
            self.event(f"wake-up not sent: {type(exc).__name__}")

    def settle_stale(self) -> int:
        from django.utils import timezone

        from messaging.services.dispatch import STALE_SENDING, sending_settle_stale

        try:
            return sending_settle_stale(now=timezone.now() + STALE_SENDING + timedelta(seconds=1))
        except Exception as exc:
            self.event(f"settle not run: {type(exc).__name__}")
            return 0

    def diagnostics(self) -> str:
        tails = []
        for path in sorted(self.workdir.glob(f"{self.slug}-*.log")):
            tails.append(f"--- {path.name}\n" + "".join(path.read_text().splitlines(True)[-15:]))
        return f"statuses {dict(self.statuses())}; events {self.log}\n" + "\n".join(tails)

    def send(self, fault: Callable[[CampaignRun, Counter], None], *, faults: int) -> None:
        """Send the campaign to the end through the test's faults (`faults` of them)."""
        self.workers.start()
        self.wake()
        last_wake = time.monotonic()
        try:
            while True:
                assert self.elapsed() < OVERALL_TIMEOUT, (
                    f"timed out after {self.elapsed():.0f} s: {self.diagnostics()}"
                )
                status = self.statuses()
                if self.faults < faults:
                    fault(self, status)
                if time.monotonic() - last_wake > 3:
                    self.wake()
                    last_wake = time.monotonic()
                busy = status["queued"] + status["deferred"]
                if self.faults >= faults and sum(status.values()) == TEXTS and not busy:
                    # Nothing due: what is still `sending` is a dead dispatcher's (or the
                    # live one's last batch: give it a moment to record it).
                    time.sleep(3)
                    if self.statuses()["sending"] == status["sending"]:
                        if not status["sending"]:
                            return
                        settled = self.settle_stale()
                        after = self.statuses()
                        self.requeued += after["queued"]
                        self.event(f"settled {settled} left sending: {dict(after)}")
                time.sleep(0.5)
        finally:
            self.workers.stop()

    def verify(self) -> dict:
        """What the carrier took against our books; asserts the guarantees, returns figures."""
        import redis

        from messaging.gateways.sandbox import RECEIPTS_KEY
        from messaging.models import OutboundMessage
        from messaging.services.status import sandbox_receipts_deliver

        # Read before they are delivered: each text the sandbox took has its receipts (one
        # `sent`, one final) under the carrier sid it was given.
        client = redis.Redis.from_url(self.redis_url)
        sids_per_text: dict[int, set[str]] = {}
        for item in client.zrange(RECEIPTS_KEY, 0, -1):
            tenant_id, message_id, sid, _status, _code = json.loads(item)
            if tenant_id == self.tenant_id:
                sids_per_text.setdefault(message_id, set()).add(sid)
        ours = OutboundMessage.objects.unscoped().filter(tenant_id=self.tenant_id)
        numbers = dict(ours.values_list("pk", "to"))
        sent_twice = [pk for pk, sids in sids_per_text.items() if len(sids) > 1]
        per_number = Counter(numbers[pk] for pk in sids_per_text if pk in numbers)
        numbers_twice = [number for number, n in per_number.items() if n > 1]
        unknown_before_receipts = ours.filter(status="unknown").count()

        # The receipts, delivered as beat's sandbox task would (all due within seconds).
        deadline = time.monotonic() + 60
        while client.zcard(RECEIPTS_KEY) and time.monotonic() < deadline:
            sandbox_receipts_deliver(until=time.time() + 10)
        final = self.statuses()
        # Every text the carrier took records the sid it was given (from our request's answer,
        # or, for a text a dead dispatcher left unknown, from its receipt).
        sids = dict(ours.values_list("pk", "carrier_sid"))
        mismatched = [pk for pk, taken in sids_per_text.items() if sids.get(pk) not in taken]
        lost = TEXTS - sum(n for status, n in final.items() if status in FINAL | {"unknown"})
        outcome = {
            "texts": sum(final.values()),
            "statuses": dict(final),
            "lost": lost,
            "sent_twice": len(sent_twice),
            "numbers_twice": len(numbers_twice),
            "unknown": final["unknown"],
            "unknown_until_receipts": unknown_before_receipts,
            "sent_later": self.requeued,
            "faults": self.faults,
            "seconds": round(self.elapsed()),
        }
        print(f"\nchaos ({self.slug}): 10,000-text campaign")
        for key, value in outcome.items():
            print(f"  {key:<24} {value}")
        for line in self.log:
            print(f"  event: {line}")

        assert outcome["texts"] == TEXTS, self.diagnostics()
        assert lost == 0, f"{lost} texts neither final nor unknown: {final}"
        assert not sent_twice, f"sent twice: {sent_twice[:20]}"
        assert not numbers_twice, f"numbers texted twice: {numbers_twice[:20]}"
        assert not mismatched, f"receipts under a sid the text doesn't record: {mismatched[:20]}"
        assert final["unknown"] <= self.faults, f"unknown {final['unknown']} > {self.faults}"
        return outcome
