"""Noisy neighbour: one brand's API latency while another brand sends ten times its share.

    make bench-noisy
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_noisy_neighbour.py;
    with DATABASE_URL / REDIS_URL set, the servers they name are used instead)

Goal (issue): one tenant sending ten times its share doesn't push another tenant's API p99
up by more than 20 %: brand B's p99 with brand A at 10x ≤ 1.20 x B's p99 with A at 1x.

Two brands on one gunicorn (the project's settings), each with its API key and 2,000 members
(generated in SQL). Each sends the same mix, open-loop (latency counts from when a request
was due, so a queue can't hide): half POST /api/v1/orders (a new order for a random member),
half GET /api/v1/members/<id>. Brand B sends at a steady rate throughout; brand A sends
(a) the same rate as B, its fair share, then (b) ten times that. The rate: `--rate` req/s, or
by default 5 % of the mix's closed-loop capacity measured first in the same run, so the
phases load the machine to 10 % and 55 % of what it can serve whatever the machine. A's load
comes from a process of its own, so its client threads don't share B's interpreter lock.
Phases alternate over rounds, the order flipping each round, so drift on a shared machine
hits both; B's p50/p99 are over all rounds of a phase, and the per-round ratios are shown,
with how busy the whole machine was in each phase.

The product's per-brand API rate limit (loyaltysms.throttling) is what keeps A's flood off
B, so the bench gives each brand the limit its share means, through the same per-brand
setting staff use (Tenant.api_rate_per_second / api_rate_burst): the share's rate, with a
burst of `--burst-seconds` of it (default 1: the share read as "N requests a second"; the
product's default limit holds 5 s, API_RATE_BURST / API_RATE_PER_SECOND = 100 / 20, which
`--burst-seconds 5` gives: each flood phase then opens with A's full 5 s bucket spent at 10x,
and 20-s phases repeat that opening in every round where a sustained flood has it once).
Both brands get the same limit.
Only the warm-up and the capacity measurement, which must see the server's own capacity, run
with the limits lifted. A's requests beyond its limit are answered 429 by the real throttle
and counted (a 429 to B, or to A at its share, is a failure); A's requests go to the same
endpoints with the same bodies in every phase.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_noisy_{os.getpid()}"
MEMBERS = 2000
FLOOD = 10
GOAL = 1.20
TABLE = harness.LatencyTable(34, 8, 8)

SEED = """
INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    timezone, tags, enrolled_at, points_balance, points_pending, lifetime_points,
    lifetime_spend, orders_count, last_activity_at, tier_id, sms_status, created_at,
    updated_at)
SELECT %(tenant)s, 'm' || n, NULL, 'm' || n || '@example.com', 'Ana', 'Lee', '', '{}',
       %(now)s, 0, 0, 0, 0, 0, %(now)s, NULL, 'none', %(now)s, %(now)s
FROM generate_series(0, %(members)s - 1) AS n;
"""


class Mix:
    """A brand's requests: even i a new order, odd i a member read."""

    def __init__(self, key: str, seed: int):
        self.key = key
        self.rng = random.Random(seed)

    def __call__(self, i: int) -> tuple[str, str, bytes, dict]:
        member = f"m{self.rng.randrange(MEMBERS)}"
        if i % 2 == 0:
            body = {
                "order_id": f"o{i}",
                "member": member,
                "subtotal": f"{self.rng.randrange(500, 25000) / 100:.2f}",
                "currency": "USD",
            }
            return harness.json_request("/api/v1/orders", self.key, body)
        return ("GET", f"/api/v1/members/{member}", b"", {"Authorization": f"Bearer {self.key}"})


def _brand_a(port, key, rate, seconds, clients, start, began, out, flood) -> None:
    outcome = harness.paced(
        port,
        Mix(key, start),
        rate=rate,
        seconds=seconds,
        clients=clients,
        start=start,
        began=began,
        refused_ok=flood,  # A at 10x is meant to meet its limit; at its share it must not
        retry_stale=True,  # at a low rate (a busy machine's capacity) connections go idle
    )
    r = outcome.result
    out.put((r.requests, r.errors, r.percentile(50), r.percentile(99), outcome.refused))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0, help="B's req/s (0: 5 %% of capacity)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=16, help="B's client threads")
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=1.0,
        help="each brand's API rate limit: its share a second, with a burst of this many "
        "seconds of it (the product's defaults hold 5 s)",
    )
    args = parser.parse_args()

    harness.setup_django(DB_NAME)
    from django.db import connection
    from django.utils import timezone

    from loyaltysms.models import Tenant
    from loyaltysms.throttling import KEY_MEMORY_SECONDS

    def limit_brands(rate: float, burst: int, *, served: bool = True) -> None:
        """Both brands' API rate limit, as staff set one brand's: in force once the web
        processes' memory of the keys (KEY_MEMORY_SECONDS) has run out, if they served any."""
        Tenant.objects.filter(slug__in=["brand-a", "brand-b"]).update(
            api_rate_per_second=rate, api_rate_burst=burst
        )
        connection.close()  # nothing open when brand A's process forks
        if served:
            time.sleep(KEY_MEMORY_SECONDS + 0.5)

    load_start = os.getloadavg()
    with harness.bench_database(DB_NAME):
        keys = {}
        for name in ("a", "b"):
            created = harness.create_brand(
                f"brand-{name}", f"Brand {name.upper()}", f"{name}@bench.test"
            )
            keys[name] = created.api_key.raw_key
            with connection.cursor() as cursor:
                cursor.execute(
                    SEED, {"tenant": created.tenant.pk, "members": MEMBERS, "now": timezone.now()}
                )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE programs_member")
        connection.close()
        print(
            f"two brands, {MEMBERS:,} members each; each request half an order, half a member "
            "read; load average at start " + "/".join(f"{x:.2f}" for x in load_start)
        )
        fork = multiprocessing.get_context("fork")
        offsets = {"a": 0, "b": 0}
        # Lifted while the server's own capacity is measured (no server has run yet).
        limit_brands(10**6, 10**6, served=False)

        with harness.web_server(DB_NAME) as port:

            def take(name: str, count: int) -> int:
                first = offsets[name]
                offsets[name] += count
                return first

            warm = Mix(keys["b"], 1)
            harness.closed_loop(port, warm, clients=8, seconds=2, start=take("b", 10**6))
            capacity = harness.closed_loop(
                port, Mix(keys["b"], 2), clients=8, seconds=5, start=take("b", 10**6)
            ).rate
            rate = args.rate or round(capacity * 0.05, 1)
            burst = max(1, round(rate * args.burst_seconds))
            print(
                f"capacity of the mix, closed loop, 8 clients, 5 s: {capacity:.0f} req/s; "
                f"B and A's fair share {rate:g} req/s, A at {FLOOD}x {rate * FLOOD:g} req/s "
                f"(the machine at {2 * rate / capacity:.0%} and "
                f"{(FLOOD + 1) * rate / capacity:.0%} of that capacity)\n"
                f"each brand's API rate limit: {rate:g} req/s, burst {burst}"
            )

            def phase(a_rate: float, seconds: float) -> tuple[harness.LoadResult, tuple]:
                began = time.perf_counter() + 1.0  # both generators ready by then
                out = fork.Queue()
                a_clients = max(8, int(a_rate * 0.2))
                a_start = take("a", int(a_rate * seconds) + 1)
                flood = a_rate > rate
                a_args = (keys["a"], a_rate, seconds, a_clients, a_start, began, out, flood)
                process = fork.Process(target=_brand_a, args=(port, *a_args))
                process.start()
                b_start = take("b", int(rate * seconds) + 1)
                cpu_before = psutil.cpu_times()
                b = harness.paced(
                    port,
                    Mix(keys["b"], b_start),
                    rate=rate,
                    seconds=seconds,
                    clients=args.clients,
                    start=b_start,
                    began=began,
                    retry_stale=True,
                ).result
                a = out.get(timeout=seconds + 120)
                cpu = psutil.cpu_times()
                busy = harness.busy_seconds(cpu) - harness.busy_seconds(cpu_before)
                total = sum(cpu) - sum(cpu_before)
                process.join(timeout=30)
                return b, (*a, busy / total if total else 0.0)

            phase(rate, 3)  # warm-up of both brands
            limit_brands(rate, burst)
            phases = ["fair", "flood"]
            results = {name: [] for name in phases}
            a_seen = {name: [] for name in phases}
            print(
                f"\n{'round':>5}  {'phase':<8}{'B p50':>8}{'B p99':>8}{'B sent':>8}{'A req/s':>9}"
                f"{'A p99':>8}{'A 429':>8}{'failed':>8}{'machine':>8}   load"
            )
            for n in range(1, args.rounds + 1):
                # The order turns each round, so no phase always follows the same one.
                shift = (n - 1) % len(phases)
                for name in phases[shift:] + phases[:shift]:
                    a_rate = rate * (1 if name == "fair" else FLOOD)
                    b, a = phase(a_rate, args.seconds)
                    results[name].append(b)
                    a_seen[name].append(a)
                    print(
                        f"{n:>5}  {name:<8}{b.percentile(50):8.1f}{b.percentile(99):8.1f}"
                        f"{b.requests:8d}{a[0] / args.seconds:9.1f}{a[3]:8.1f}{a[4]:8d}"
                        f"{b.errors + a[1]:8d}{a[5]:8.0%}   {os.getloadavg()[0]:.2f}"
                    )

    fair, flood = harness.merged(results["fair"]), harness.merged(results["flood"])
    per_round = [
        f.percentile(99) / q.percentile(99)
        for f, q in zip(results["flood"], results["fair"], strict=True)
    ]
    ratio = flood.percentile(99) / fair.percentile(99)
    errors = sum(r.errors for v in results.values() for r in v)
    errors += sum(a[1] for v in a_seen.values() for a in v)
    print(f"\nbrand B at {rate:g} req/s, {args.rounds} rounds x {args.seconds:.0f} s a phase (ms):")
    print(TABLE.header())
    print(TABLE.row(f"B, A at its share ({rate:g}/s)", fair))
    print(TABLE.row(f"B, A at {FLOOD}x ({rate * FLOOD:g}/s)", flood))
    a_sent = sum(a[0] for a in a_seen["flood"])
    a_refused = sum(a[4] for a in a_seen["flood"])
    print(
        f"A at {FLOOD}x: {a_refused:,} of its {a_sent:,} requests answered 429 by its limit "
        f"({a_refused / max(a_sent, 1):.0%}; {1 - 1 / FLOOD:.0%} is its excess)"
    )
    unsent = sum(int(rate * args.seconds) - r.requests for v in results.values() for r in v)
    if unsent:
        print(f"  the server fell >10 s behind: {unsent:,} of B's requests never offered")
    met = ratio <= GOAL and errors == 0
    print(
        f"B's p99 with A at {FLOOD}x / with A at 1x: {ratio:.2f}x   per round: "
        + ", ".join(f"{x:.2f}x" for x in per_round)
        + f"\nB's p50 ratio: {flood.percentile(50) / fair.percentile(50):.2f}x"
        + f"\ngoal: ≤ {GOAL:.2f}x → {'met' if met else 'MISSED'}; failed answers {errors} "
        "(any non-2xx but A's 429s at 10x); "
        "load average at the end " + "/".join(f"{x:.2f}" for x in os.getloadavg())
    )
    harness.record(
        "noisy neighbour",
        f"brand B's API p99, brand A at {FLOOD}x its share",
        f"{flood.percentile(99):.1f} ms",
        baseline=f"A at its share: {fair.percentile(99):.1f} ms",
        ratio=f"{ratio:.2f}x",
        goal=f"≤ {GOAL:.2f}x",
        met=met,
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
