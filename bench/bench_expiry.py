"""The daily expiry over 1 M lots, next to the bare UPDATE that zeroes the same lots.

    make bench-expiry
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_expiry.py)

Goal (issue 3): 1 M due lots expire "in seconds", with no per-row Python loop. The sweep does
more than zero the lots: it locks the members, writes one ledger entry and one outbox event
per member, and lowers each balance. The baseline is the least any expiry must do, a single
`UPDATE … SET remaining = 0` over the same lots, measured on an identical copy of the data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_expiry_{os.getpid()}"

SEED = """
INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    timezone, tags, enrolled_at, points_balance, points_pending, lifetime_points,
    lifetime_spend, orders_count, last_activity_at, sms_status, created_at, updated_at)
SELECT %(tenant)s, 'm' || n, NULL, '', '', '', '', '{}', %(then)s, %(per_member)s * 10, 0,
       %(per_member)s * 10, 0, 0, %(then)s, 'none', %(then)s, %(then)s
FROM generate_series(1, %(members)s) AS n;

INSERT INTO programs_pointslot (tenant_id, member_id, points, remaining, expired, earned_at,
    available_at, matured, expires_at, source, reason)
SELECT %(tenant)s, m.id, 10, 10, 0, %(then)s, %(then)s, TRUE,
       %(then)s + interval '30 days', 'order', 'Order'
FROM programs_member m, generate_series(1, %(per_member)s)
WHERE m.tenant_id = %(tenant)s;

INSERT INTO programs_pointsentry (tenant_id, member_id, kind, points, balance_after, reason,
    source, source_ref, created_at)
SELECT %(tenant)s, m.id, 'earn', %(per_member)s * 10, %(per_member)s * 10, 'Seed', 'order',
       '', %(then)s
FROM programs_member m WHERE m.tenant_id = %(tenant)s;
ANALYZE;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--lots-per-member", type=int, default=10)
    args = parser.parse_args()
    members = args.lots // args.lots_per_member

    harness.setup_django(DB_NAME)
    from django.db import connection

    from loyaltysms.services import tenant_create
    from loyaltysms.tenancy.context import tenant_scope
    from programs.models import LoyaltyEvent, Member, PointsEntry, PointsLot
    from programs.services import program as program_services
    from programs.services.sweeps import BATCH_MEMBERS, points_expire_due

    with harness.bench_database(DB_NAME):
        results = {}
        for run in ("baseline", "sweep"):
            tenant = tenant_create(
                slug=f"expiry-{run}",
                name=run,
                owner_email=f"{run}@bench.test",
                owner_password="bench-password-123",  # noqa: S106 - a throwaway database
            ).tenant
            with tenant_scope(tenant):
                program = program_services.program_get(tenant)
                program_services.program_update(
                    program=program, expiry_policy="lot", expiry_days=30
                )
            then = datetime(2026, 1, 1, tzinfo=UTC)
            began = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(
                    SEED,
                    {
                        "tenant": tenant.pk,
                        "then": then,
                        "members": members,
                        "per_member": args.lots_per_member,
                    },
                )
            seeded = time.perf_counter() - began
            now = then + timedelta(days=40)
            began = time.perf_counter()
            if run == "baseline":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE programs_pointslot SET expired = remaining, remaining = 0 "
                        "WHERE tenant_id = %s "
                        "AND matured AND remaining > 0 AND expires_at <= %s",
                        [tenant.pk, now],
                    )
                    touched = cursor.rowcount
            else:
                result = points_expire_due(tenant=tenant, now=now)
                touched = result.entries
            results[run] = (time.perf_counter() - began, touched, seeded)
            if run == "sweep":
                with tenant_scope(tenant):
                    assert not PointsLot.objects.filter(remaining__gt=0).exists()
                    assert not Member.objects.filter(points_balance__gt=0).exists()
                    assert PointsEntry.objects.filter(kind="expire").count() == members
                    assert LoyaltyEvent.objects.filter(kind="points_expired").count() == members
                    again = points_expire_due(tenant=tenant, now=now)
                    assert again.entries == 0, "a second run must find nothing"

    base, sweep = results["baseline"], results["sweep"]
    print(f"lots={args.lots:,} members={members:,} (seeding took {sweep[2]:.1f} s)")
    print(f"baseline: one UPDATE zeroing the lots   {base[0]:7.2f} s  ({base[1]:,} lots)")
    print(f"points_expire_due (locks, entries,      {sweep[0]:7.2f} s  ({sweep[1]:,} members)")
    print(f"  events, balances; {BATCH_MEMBERS:,} members a batch)")
    print(f"ratio sweep/baseline                    {sweep[0] / base[0]:7.2f}x")
    print(f"lots expired per second by the sweep    {args.lots / sweep[0]:,.0f}")
    harness.record(
        "points expiry",
        f"points_expire_due, {args.lots:,} lots of {members:,} members",
        f"{sweep[0]:.2f} s",
        baseline=f"one UPDATE: {base[0]:.2f} s",
        ratio=f"{sweep[0] / base[0]:.2f}x",
        goal="none stated",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
