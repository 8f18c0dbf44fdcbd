"""Keyset pagination: page 10,000 of the members lists against their page 1.

    make bench-keyset
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_keyset_page.py;
    with DATABASE_URL / REDIS_URL set, the servers they name are used instead)

Goal (issue): a deep page costs about what the first one does — here, page 10,000's median
and p99 latency within 1.5x of page 1's, same page size, same server, same run.

A brand with 10,000 pages of members (500,050 at the API's default 50 a page), and a second
brand with a fifth as many, their rows interleaved (each brand's members spread over the
table as sign-ups are), generated in SQL (INSERT … SELECT generate_series) in a database of
its own. Two lists, both served by gunicorn with the project's settings:
- GET /api/v1/members?cursor=…: the REST API (id order, DRF's cursor `p=<last id>`, api.md);
  page 10,000's cursor is the one page 9,999 returns, checked against the API's own `next`
  from page 1, and the page's first member is checked to be the 499,951st;
- GET /members/?after=<id>: the dashboard's list (newest first, 50 a page), signed in as the
  brand's owner; its page 10,000's link to page 10,001 is checked.
One client, one request at a time (the latency of a page, not a load test), the four series
alternating in rounds so drift on a shared machine hits each. Medians and p99s of all rounds.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_keyset_{os.getpid()}"
PAGE_SIZE = 50  # the API's default limit (loyaltysms.pagination) and the dashboard's PAGE
DEEP = 10_000
GOAL = 1.5

SEED = """
SELECT setseed(0.42);

INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    timezone, tags, enrolled_at, points_balance, points_pending, lifetime_points,
    lifetime_spend, orders_count, last_activity_at, tier_id, sms_status, created_at,
    updated_at)
SELECT CASE WHEN n %% 6 = 0 THEN %(other)s ELSE %(tenant)s END, 'm' || n, NULL,
       'm' || n || '@example.com',
       (ARRAY['Ana','Ben','Chloe','Dev','Eli','Fatima','Gus','Hana','Ivan','Jo'])[1 + n %% 10],
       'Lee', '', '{}', at, floor(random() * 5000)::int, 0, 0, 0, 0, at, NULL, 'none', at, at
FROM (SELECT n, %(now)s - (%(total)s - n) * interval '1 minute' AS at
      FROM generate_series(1, %(total)s) AS n) g;
"""


def api_cursor(position: int) -> str:
    """DRF's CursorPagination cursor for "after id `position`" (base64 of `p=<id>`)."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


def get(conn: http.client.HTTPConnection, path: str, headers: dict) -> tuple[float, int, bytes]:
    began = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    return (time.perf_counter() - began) * 1000, response.status, body


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100, help="per series and round")
    parser.add_argument("--warmup", type=int, default=20, help="requests per series")
    parser.add_argument("--pages", type=int, default=DEEP, help="the deep page's number")
    args = parser.parse_args()

    harness.setup_django(DB_NAME)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from loyaltysms.services import tenant_create

    load_start = os.getloadavg()
    deep_page = args.pages
    # The brand needs deep_page full pages and one more member, so page deep_page has a next.
    ours = deep_page * PAGE_SIZE + 1
    total = ours + ours // 5  # 5 of every 6 rows ours
    with harness.bench_database(DB_NAME):
        created = tenant_create(
            slug="pages",
            name="Pages",
            owner_email="pages@bench.test",
            owner_password="bench-password-123",  # noqa: S106 - a throwaway database
        )
        tenant, key = created.tenant, created.api_key.raw_key
        other = tenant_create(
            slug="other",
            name="Other",
            owner_email="other@bench.test",
            owner_password="bench-password-123",  # noqa: S106 - a throwaway database
        ).tenant
        began = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED,
                {"tenant": tenant.pk, "other": other.pk, "total": total, "now": timezone.now()},
            )
            cursor.execute("VACUUM ANALYZE programs_member")
            cursor.execute(
                "SELECT id, external_id FROM programs_member WHERE tenant_id = %s ORDER BY id",
                [tenant.pk],
            )
            ids = cursor.fetchall()
        members = len(ids)
        assert members >= deep_page * PAGE_SIZE + 1, members
        print(
            f"{members:,} members of the brand, {total - members:,} of another brand, "
            f"interleaved (seeded in {time.perf_counter() - began:.1f} s); "
            f"{PAGE_SIZE} a page; load average at start " + "/".join(f"{x:.2f}" for x in load_start)
        )
        owner = get_user_model().objects.get(email="pages@bench.test")
        client = Client()
        client.force_login(owner)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        connection.close()

        skip = (deep_page - 1) * PAGE_SIZE  # members before the deep page
        api_path = reverse("api_members")
        dash_path = reverse("members")
        newest = [i for i, _ in reversed(ids)]
        series = {
            "API page 1": (api_path, "api"),
            f"API page {deep_page:,}": (
                f"{api_path}?cursor={quote(api_cursor(ids[skip - 1][0]))}",
                "api",
            ),
            "dashboard page 1": (dash_path, "dash"),
            f"dashboard page {deep_page:,}": (f"{dash_path}?after={newest[skip - 1]}", "dash"),
        }
        headers = {
            "api": {"Authorization": f"Bearer {key}", "Accept": "application/json"},
            "dash": {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"},
        }

        with harness.web_server(DB_NAME) as port:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            # The pages are what they claim to be: the API's own next cursor is ours, the deep
            # page starts where it should, and the dashboard's deep page links to the next.
            _, status, body = get(conn, api_path, headers["api"])
            first = json.loads(body)
            assert status == 200 and first["next"] == api_cursor(ids[PAGE_SIZE - 1][0]), first
            _, status, body = get(conn, series[f"API page {deep_page:,}"][0], headers["api"])
            deep = json.loads(body)
            assert status == 200 and len(deep["results"]) == PAGE_SIZE, status
            assert deep["results"][0]["external_id"] == ids[skip][1], deep["results"][0]
            assert deep["next"] == api_cursor(ids[skip + PAGE_SIZE - 1][0]), deep["next"]
            deep_path = series[f"dashboard page {deep_page:,}"][0]
            _, status, body = get(conn, deep_path, headers["dash"])
            assert status == 200, status
            assert f"after={newest[skip + PAGE_SIZE - 1]}".encode() in body, "dashboard page"
            print(
                f"checked: the API's cursor from page 1 is p=<id>; page {deep_page:,} starts at "
                f"member {skip + 1:,} ({ids[skip][1]}); the dashboard's links to the next page"
            )

            for path, kind in series.values():
                for _ in range(args.warmup):
                    get(conn, path, headers[kind])
            latencies = {name: [] for name in series}
            errors = 0
            for _ in range(args.rounds):
                for name, (path, kind) in series.items():
                    for _ in range(args.requests):
                        ms, status, _ = get(conn, path, headers[kind])
                        latencies[name].append(ms)
                        errors += status != 200
            conn.close()

    print(
        f"\none client, {args.rounds} rounds x {args.requests} requests a series, alternating (ms):"
    )
    print(f"  {'list':<30}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>6}")
    for name, values in latencies.items():
        ordered = sorted(values)
        print(
            f"  {name:<30}{harness.median(values):8.1f}"
            f"{ordered[int(len(ordered) * 0.9)]:8.1f}{p99(values):8.1f}{ordered[-1]:8.1f}"
            f"{len(values):6d}"
        )
    print(f"goal: page {deep_page:,} within {GOAL}x of page 1 (p50 and p99)")
    all_met = errors == 0
    for label in ("API", "dashboard"):
        shallow = latencies[f"{label} page 1"]
        deep_values = latencies[f"{label} page {deep_page:,}"]
        r50 = harness.median(deep_values) / harness.median(shallow)
        r99 = p99(deep_values) / p99(shallow)
        met = r50 <= GOAL and r99 <= GOAL
        all_met &= met
        print(
            f"  {label:<10} page {deep_page:,}/page 1: p50 {r50:.2f}x, p99 {r99:.2f}x → "
            f"{'met' if met else 'MISSED'}"
        )
        harness.record(
            "keyset page",
            f"{label} members list, page {deep_page:,} p50 / p99",
            f"{harness.median(deep_values):.1f} / {p99(deep_values):.1f} ms",
            baseline=f"page 1: {harness.median(shallow):.1f} / {p99(shallow):.1f} ms",
            ratio=f"{r50:.2f}x / {r99:.2f}x",
            goal=f"≤ {GOAL}x",
            met=met,
        )
    print(
        f"non-200 answers: {errors}; load average at the end "
        + "/".join(f"{x:.2f}" for x in os.getloadavg())
    )
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
