"""Campaign fan-out to 1 M subscribed members, next to raw COPY of the same rows.

    .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_campaign_fanout.py

Goal (issue 5, Done-when 3): creating a 1,000,000-recipient campaign's texts (render with
personalization, checks, rows created) at ≥ 15 % of the rows/s of a raw COPY of the same rows
into the same table in the same run, and in under 60 s.

The brand is generated in SQL (INSERT … SELECT generate_series, seeded random()) in a
database of its own, dropped afterwards: members with names, balances and tiers, each with a
subscribed number in New York. The campaign texts the segment "subscribed" with
"Hi {first_name|there}, you have {points_balance} points ({vip_tier|member}) …" (with
--link, a tracked link per text too: one more row per recipient, in messaging_shortlink).

Each round, alternating:
- launch: automations.services.launch — the audience frozen (one INSERT … SELECT of the
  segment's numbers with the groups), then the texts created in chunks of 5,000 (personalization
  read in the chunk's query, rendered in Python, COPYed into a staging table, INSERT … SELECT
  … ON CONFLICT DO NOTHING, recipients marked), timed as "freeze" and "fan-out";
- baseline: the rows just created, dumped (untimed), the tables emptied, then COPY of those
  rows back into messaging_outboundmessage (and messaging_shortlink with --link), with the
  same indexes, timed.
Medians are reported, and the load average around each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_fanout_{os.getpid()}"
BODY = (
    "Hi {first_name|there}, you have {points_balance} points ({vip_tier|member}). "
    "Double points this weekend only!"
)
LINK = " Shop: https://shop.example.com/weekend"

SEED = """
SELECT setseed(0.42);

INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    timezone, tags, enrolled_at, points_balance, points_pending, lifetime_points,
    lifetime_spend, orders_count, last_activity_at, tier_id, sms_status, created_at,
    updated_at)
SELECT %(tenant)s, 'm' || n, NULL, '', (ARRAY['Ana','Ben','Chloe','Dev','Eli','Fatima','Gus',
       'Hana','Ivan','Jo'])[1 + n %% 10] || CASE WHEN n %% 7 = 0 THEN '' ELSE 'e' END,
       'Lee', '', '{}', %(now)s, floor(random() * 5000)::int, 0, 0, 0, 0, %(now)s,
       CASE WHEN t < 0.6 THEN NULL WHEN t < 0.9 THEN %(silver)s ELSE %(gold)s END,
       'subscribed', %(now)s, %(now)s
FROM (SELECT n, random() AS t FROM generate_series(1, %(members)s) AS n) g;

INSERT INTO messaging_subscriber (tenant_id, phone, member_id, status, source, timezone,
    timezone_candidates, region, country, subscribed_at, unread_count, needs_attention,
    created_at, updated_at)
SELECT %(tenant)s, '+1212' || lpad(n::text, 7, '0'), n + %(first_member)s - 1, 'subscribed',
       'checkout', 'America/New_York', '{}', 'NY', 'US', %(now)s, 0, FALSE, %(now)s, %(now)s
FROM generate_series(1, %(members)s) AS n;
"""

OUTBOUND_COLUMNS = (
    'tenant_id, subscriber_id, sender_id, "to", kind, source, source_ref, dedupe_key, body, '
    "encoding, segments, price_estimate, status, status_reason, error_code, carrier_sid, "
    "attempts, send_after, expires_at, created_at, sending_at, sent_at, delivered_at, "
    "finished_at, updated_at"
)
LINK_COLUMNS = "tenant_id, code, target, subscriber_id, message_dedupe_key, created_at, clicks"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def drop_wakeups(redis_url: str) -> int:
    """Remove the dispatcher wake-ups this process queued (one per chunk at most, debounced);
    no dispatcher runs here, and they must not wake someone else's later."""
    import redis

    from loyaltysms.queues import Queue

    client = redis.Redis.from_url(redis_url)
    ours = f"gen{os.getpid()}@{socket.gethostname()}"
    dropped = 0
    for raw in client.lrange(Queue.DISPATCH.value, 0, -1):
        try:
            origin = json.loads(raw)["headers"].get("origin")
        except (ValueError, KeyError, AttributeError):
            continue
        if origin == ours:
            dropped += client.lrem(Queue.DISPATCH.value, 1, raw)
    return dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--link", action="store_true", help="a tracked link in every text")
    parser.add_argument("--profile", action="store_true", help="cProfile one fan-out")
    parser.add_argument("--explain", action="store_true", help="the freeze's plan, once")
    args = parser.parse_args()

    harness.setup_django(DB_NAME)
    from django.conf import settings
    from django.db import connection

    from automations.models import Campaign
    from automations.services import launch
    from automations.services.campaigns import campaign_create
    from loyaltysms.services import tenant_create
    from loyaltysms.tenancy.context import tenant_scope
    from messaging.services.setup import messaging_changed
    from programs.services import program as program_services
    from segments.services import segment_create

    with harness.bench_database(DB_NAME):
        tenant = tenant_create(
            slug="fanout",
            name="Fanout",
            owner_email="fanout@bench.test",
            owner_password="bench-password-123",  # noqa: S106 - a throwaway database
        ).tenant
        now = datetime.now(UTC).replace(microsecond=0)
        with tenant_scope(tenant):
            tiers = {
                name: program_services.tier_create(
                    tenant=tenant,
                    name=name,
                    threshold=threshold,
                    basis="points_earned",
                    period="lifetime",
                ).pk
                for name, threshold in (("Silver", 500), ("Gold", 2000))
            }
            segment = segment_create(
                tenant=tenant,
                name="Subscribed",
                rules={"field": "sms_status", "op": "is", "value": "subscribed"},
                now=now,
            )
        began = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM programs_member")
            first_member = cursor.fetchone()[0]
            cursor.execute(
                SEED,
                {
                    "tenant": tenant.pk,
                    "now": now,
                    "members": args.members,
                    "silver": tiers["Silver"],
                    "gold": tiers["Gold"],
                    "first_member": first_member,
                },
            )
            cursor.execute("VACUUM ANALYZE")
        print(
            f"{args.members:,} members, each with a subscribed number "
            f"(seeding took {time.perf_counter() - began:.1f} s); load average {load()}"
        )
        body = BODY + (LINK if args.link else "")
        print(f"template: {body!r}  chunks of {args.chunk:,}")

        def reset() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "TRUNCATE automations_campaignrecipient, messaging_attribution, "
                    "messaging_outboundmessage, messaging_shortlink"
                )
                cursor.execute("CHECKPOINT")

        def fan_out(n: int) -> tuple[float, float, int, int]:
            reset()
            with tenant_scope(tenant):
                campaign = campaign_create(
                    tenant=tenant,
                    now=now,
                    name=f"Weekend {n}",
                    body=body,
                    segment_ids=[segment.pk],
                    send_mode="at",
                    send_at=now,
                )
                Campaign.objects.filter(pk=campaign.pk).update(status="scheduled")
                campaign.refresh_from_db()
                t0 = time.perf_counter()
                launch._start(campaign, now)
                t1 = time.perf_counter()
                assert launch.campaign_launch(campaign=campaign, now=now, chunk=args.chunk)
                t2 = time.perf_counter()
                campaign.refresh_from_db()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*), count(DISTINCT subscriber_id) FROM messaging_outboundmessage"
                )
                rows, distinct = cursor.fetchone()
                cursor.execute("SELECT count(*) FROM messaging_shortlink")
                links = cursor.fetchone()[0]
            assert rows == distinct == campaign.created_count == args.members, (rows, distinct)
            assert links == (args.members if args.link else 0)
            return t1 - t0, t2 - t1, rows, links

        def copy_baseline(folder: str) -> float:
            """Dump what the fan-out wrote, empty the tables, COPY it back (timed)."""
            outbound, links = Path(folder, "outbound.csv"), Path(folder, "links.csv")
            with connection.cursor() as cursor:
                raw = cursor.cursor
                with outbound.open("w") as f:
                    raw.copy_expert(
                        f"COPY (SELECT {OUTBOUND_COLUMNS} FROM messaging_outboundmessage) "
                        "TO STDOUT WITH (FORMAT csv)",
                        f,
                    )
                with links.open("w") as f:
                    raw.copy_expert(
                        f"COPY (SELECT {LINK_COLUMNS} FROM messaging_shortlink) "
                        "TO STDOUT WITH (FORMAT csv)",
                        f,
                    )
            reset()
            with connection.cursor() as cursor:
                raw = cursor.cursor
                t0 = time.perf_counter()
                with outbound.open() as f:
                    raw.copy_expert(
                        f"COPY messaging_outboundmessage ({OUTBOUND_COLUMNS}) FROM STDIN "
                        "WITH (FORMAT csv)",
                        f,
                    )
                with links.open() as f:
                    raw.copy_expert(
                        f"COPY messaging_shortlink ({LINK_COLUMNS}) FROM STDIN WITH (FORMAT csv)",
                        f,
                    )
                return time.perf_counter() - t0

        if args.explain:
            from django.db import transaction

            with tenant_scope(tenant):
                campaign = campaign_create(
                    tenant=tenant, now=now, name="Plan", body=body, segment_ids=[segment.pk]
                )
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOAD 'auto_explain'")
                cursor.execute("SET LOCAL auto_explain.log_min_duration = 0")
                cursor.execute("SET LOCAL auto_explain.log_analyze = on")
                cursor.execute("SET LOCAL auto_explain.log_triggers = on")
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # their checks in the plans
                cursor.execute("SET LOCAL client_min_messages = log")
                with tenant_scope(tenant):
                    Campaign.objects.filter(pk=campaign.pk).update(status="scheduled")
                    t0 = time.perf_counter()
                    launch._start(campaign, now)
                    print(f"freeze: {time.perf_counter() - t0:.3f} s")
                    writer = launch._Writer(campaign, "remainder", now)
                    t0 = time.perf_counter()
                    writer.chunk(cursor, 0, args.chunk)
                    print(f"one chunk: {time.perf_counter() - t0:.3f} s")
                for notice in connection.connection.notices:
                    if "COPY" not in notice:
                        print(notice[:8000])
                transaction.set_rollback(True)
            messaging_changed(tenant)  # the sender made in the rolled-back transaction

        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            fan_out(0)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

        freezes, fan_outs, copies, launches = [], [], [], []
        print(
            f"\n{'round':>5}{'freeze s':>10}{'fan-out s':>11}{'launch s':>10}{'COPY s':>8}"
            f"{'fan-out/COPY':>14}{'launch/COPY':>13}   load (1/5 min) before fan-out, COPY"
        )
        with tempfile.TemporaryDirectory() as folder:
            for n in range(1, args.rounds + 1):
                load_fan = load()
                freeze, fan, rows, _ = fan_out(n)
                load_copy = load()
                copy = copy_baseline(folder)
                freezes.append(freeze)
                fan_outs.append(fan)
                launches.append(freeze + fan)
                copies.append(copy)
                print(
                    f"{n:>5}{freeze:>10.2f}{fan:>11.2f}{freeze + fan:>10.2f}{copy:>8.2f}"
                    f"{copy / fan:>13.1%}{copy / (freeze + fan):>13.1%}   {load_fan}, {load_copy}"
                )
        freeze, fan, whole, copy = (
            statistics.median(x) for x in (freezes, fan_outs, launches, copies)
        )
        rows = args.members * (2 if args.link else 1)  # a text (and a link) a recipient
        ratio_fan = statistics.median(c / f for c, f in zip(copies, fan_outs, strict=True))
        ratio_launch = statistics.median(c / f for c, f in zip(copies, launches, strict=True))
        what = "texts + tracked links" if args.link else "texts"
        print(f"\nmedians of {args.rounds} rounds, {rows:,} {what}:")
        print(f"  raw COPY of the same rows     {copy:7.2f} s  {rows / copy:>10,.0f} rows/s")
        print(f"  fan-out (texts created)       {fan:7.2f} s  {rows / fan:>10,.0f} rows/s")
        print(f"  launch (freeze + fan-out)     {whole:7.2f} s  {rows / whole:>10,.0f} rows/s")
        print(f"    of which the audience freeze {freeze:6.2f} s")
        print(f"  fan-out / COPY rows/s         {ratio_fan:7.1%}")
        print(f"  launch / COPY rows/s          {ratio_launch:7.1%}")
        met = ratio_launch >= 0.15 and whole < 60
        print(
            f"goal: ≥ 15 % of COPY's rows/s and under 60 s (whole launch) → "
            f"{'met' if met else 'MISSED'}; load average at the end {load()}"
        )
    harness.record(
        "campaign fan-out",
        f"launch of {args.members:,} texts" + (" with tracked links" if args.link else ""),
        f"{whole:.2f} s ({rows / whole:,.0f} rows/s)",
        baseline=f"COPY {copy:.2f} s ({rows / copy:,.0f} rows/s)",
        ratio=f"{ratio_launch:.1%} of COPY's rows/s",
        goal="≥ 15 % and under 60 s",
        met=met,
    )
    dropped = drop_wakeups(settings.REDIS_URL) if getattr(settings, "REDIS_URL", "") else 0
    print(f"({dropped} dispatcher wake-ups this process queued were removed from the broker)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
