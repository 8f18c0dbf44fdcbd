"""Date triggers: the scans that bring members into flows at a local time of day.

Every 15 minutes (zones with :30 and :45 offsets), one statement per trigger type finds, for
every live flow with that trigger, the members for whom it holds today in their own zone
(Member.timezone, else the brand's) once their local clock has passed the flow's "at" — and
enters them straight from programs_member: INSERT … SELECT … ON CONFLICT DO NOTHING, with
the 'entered' log rows in the same statement. No member is ever loaded into Python.

Each run is keyed by its occurrence (birthday → the birthday's year, points expiring → the
expiry date, win-back → the last order's date, …; then the flow's entry limit: "once", the
brand's local year, or that natural key), under FlowRun's unique (tenant, flow, person,
occurrence). A scan that runs twice, or one killed between statements and run again, enters
nobody twice; each statement commits on its own, so what a killed scan did stays done.

Triggers and the indexes they read (tenant_id first everywhere):
- birthday: the (month, day) every zone can be living now, N days ahead → member_tenant_birthday;
- points_expiring: open matured lots expiring within N days (+ a margin for the zones) →
  lot_open_by_expiry, then each member by primary key;
- winback: orders placed around N days ago → order_tenant_placed, then each member's
  last_order_at decides (an index on members' last_order_at would cost every order its
  heap-only update of the member row);
- near_next_tier: every member of the brand: the tier above theirs and what they have toward
  it, computed as programs.services.tiers does (orders and bonus points in the tier period,
  summed per brand) — for ladders on points earned only: a spend ladder has no "points to
  the next tier";
- unredeemed_balance: every member of the brand whose balance buys its cheapest active
  reward and who redeemed nothing lately (redemption_tenant_member);
- anniversary: members enrolled on this month and day (UTC, ± the zones) of any year →
  member_tenant_enrolled_day.

A flow with a segment filter is scanned the same way, but its candidates go through the
segment's own query (automations.services.flow_segments.in_segment, a chunk at a time) before
they enter: the segment compiler answers "which of these people", not a subquery to join.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from automations.models import Flow
from automations.services.flow_engine import Entry, enter_rows, flow_runs_enter
from automations.services.flow_segments import in_segment
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope

# Candidates of segment-filtered flows asked about in one segment query.
SEGMENT_CHUNK = 5000

# Live flows of one date trigger, with their settings; %(segmented)s picks the flows with a
# segment filter (entered through it) or those without (entered in one statement).
# MATERIALIZED: the settings are read out of the JSON once per flow, not once per member.
# WARNING: without {only_tenant} this is every brand's flows, on purpose (the scan over all
# tenants); every row joined to them is matched on the flow's tenant_id.
FLOWS = """
flows AS MATERIALIZED (
    SELECT f.id, f.tenant_id, f.steps ->> 'start' AS step, f.entry_limit,
           coalesce(f.trigger ->> 'at', '10:00')::time AS at,
           coalesce((f.trigger ->> %(setting)s)::int, %(default)s) AS n,
           t.timezone AS brand_zone
    FROM automations_flow f
    JOIN loyaltysms_tenant t ON t.id = f.tenant_id
    WHERE f.status = 'live' AND f.trigger_type = %(kind)s AND f.audience <> 'non_members'
      AND (f.segment_id IS NOT NULL) = %(segmented)s {only_tenant}
)"""

# The member's zone and the local moment there; `z.local` is a timestamp without zone.
LOCAL = """
CROSS JOIN LATERAL (SELECT coalesce(nullif(m.timezone, ''), f.brand_zone) AS zone) mz
CROSS JOIN LATERAL (SELECT %(now)s AT TIME ZONE mz.zone AS local) z"""

# The occurrence under the flow's entry limit (as flow_triggers.occurrence: "once", the
# brand's local year, or the trigger's own occurrence).
OCCURRENCE = """
CASE f.entry_limit
    WHEN 'once' THEN 'once'
    WHEN 'yearly' THEN extract(year FROM %(now)s AT TIME ZONE f.brand_zone)::int::text
    ELSE {natural}
END"""

SELECT = (
    "SELECT f.tenant_id, f.id AS flow_id, m.id AS member_id, {occurrence} AS occurrence, f.step"
)
DUE = "z.local::time >= f.at"
# Natural occurrences that need the member's zone.
EXPIRY_DAY = "'exp:' || (s.expires_at AT TIME ZONE mz.zone)::date"
LAST_ORDER_DAY = "'order:' || (m.last_order_at AT TIME ZONE mz.zone)::date"
BALANCE_PERIOD = "'bal:' || ((z.local::date - date '1970-01-01') / f.n)"

# Every zone's local date is within a day of UTC's (offsets run from -12 to +14 hours): the
# birthdays anyone can be having N days from now are those of 3 dates, each an index probe
# per flow (and Feb 29 birthdays on Feb 28 when the year has no Feb 29: a probe with a NULL
# day finds nobody).
BIRTHDAY = f"""
WITH {FLOWS}
{SELECT.format(occurrence=OCCURRENCE.format(natural="extract(year FROM d.target)::int::text"))}
FROM flows f
CROSS JOIN LATERAL (
    SELECT %(utc_day)s::date + k + f.n AS target FROM generate_series(-1, 1) AS k
) d
CROSS JOIN LATERAL (VALUES
    (extract(month FROM d.target)::int, extract(day FROM d.target)::int),
    (2, CASE WHEN extract(month FROM d.target) = 2 AND extract(day FROM d.target) = 28
              AND extract(month FROM d.target + 1) = 3 THEN 29 END)
) AS w(month, dom)
JOIN programs_member m
  ON m.tenant_id = f.tenant_id AND m.birthday_month = w.month AND m.birthday_day = w.dom
{LOCAL}
WHERE {DUE} AND z.local::date + f.n = d.target
"""  # noqa: S608 - constants and parameters only

# Per flow, its brand's open lots by expiry (an index range), the soonest per member; a
# lot's end of day is in the member's zone, at most a day (and a DST hour) after now + N
# days: the range takes two days more, the member's zone decides. A member the flow took in
# within the last N days is left out: lots expire on many days (one per order), and one
# warning per expiry date would text a frequent buyer every day.
POINTS_EXPIRING = f"""
WITH {FLOWS}
{SELECT.format(occurrence=OCCURRENCE.format(natural=EXPIRY_DAY))}
FROM flows f
CROSS JOIN LATERAL (
    SELECT l.member_id, min(l.expires_at) AS expires_at
    FROM programs_pointslot l
    WHERE l.tenant_id = f.tenant_id AND l.remaining > 0 AND l.matured
      AND l.expires_at > %(now)s AND l.expires_at <= %(now)s + (f.n + 2) * interval '1 day'
    GROUP BY l.member_id
) s
JOIN programs_member m ON m.id = s.member_id AND m.tenant_id = f.tenant_id
{LOCAL}
WHERE {DUE}
  AND s.expires_at < ((z.local::date + f.n + 1)::timestamp AT TIME ZONE mz.zone)
  AND NOT EXISTS (
      SELECT 1 FROM automations_flowrun r
      WHERE r.tenant_id = f.tenant_id AND r.member_id = m.id AND r.flow_id = f.id
        AND r.entered_at > %(now)s - f.n * interval '1 day')
"""  # noqa: S608 - constants and parameters only

# Per flow, the members with an order placed around N days ago (a margin for the zones and
# for two days of missed scans: an index range); their last order's local date decides, so
# a later order takes them out.
WINBACK = f"""
WITH {FLOWS}
{SELECT.format(occurrence=OCCURRENCE.format(natural=LAST_ORDER_DAY))}
FROM flows f
CROSS JOIN LATERAL (
    SELECT DISTINCT o.member_id
    FROM programs_order o
    WHERE o.tenant_id = f.tenant_id
      AND o.placed_at >= %(now)s - (f.n + 4) * interval '1 day'
      AND o.placed_at < %(now)s - (f.n - 2) * interval '1 day'
) c
JOIN programs_member m ON m.id = c.member_id AND m.tenant_id = f.tenant_id
{LOCAL}
WHERE {DUE}
  AND (m.last_order_at AT TIME ZONE mz.zone)::date
      BETWEEN z.local::date - f.n - 2 AND z.local::date - f.n
"""  # noqa: S608 - constants and parameters only

# As programs.services.tiers: the next tier is the lowest above the member's; what counts
# toward it is orders' points (awarded - reversed) plus bonus points in the tier period
# (calendar year in the brand's zone, rolling 12 months, or lifetime), ceil'd. Ladders on
# spend have no "points to the next tier". What each member has counted is summed once per
# brand (its orders and bonus entries in the period), not looked up member by member.
NEAR_NEXT_TIER = f"""
WITH {FLOWS},
brands AS MATERIALIZED (
    SELECT DISTINCT ON (f.tenant_id) f.tenant_id,
           CASE t.period
               WHEN 'calendar_year' THEN
                   date_trunc('year', %(now)s AT TIME ZONE f.brand_zone) AT TIME ZONE f.brand_zone
               WHEN 'rolling_12_months' THEN %(now)s - interval '12 months'
               ELSE '1970-01-01T00:00:00Z'::timestamptz
           END AS start
    FROM flows f
    JOIN programs_tier t ON t.tenant_id = f.tenant_id AND t.basis = 'points_earned'
    ORDER BY f.tenant_id, t.threshold
),
counted AS (
    SELECT member_id, sum(points) AS points FROM (
        SELECT o.member_id, o.points_awarded - o.points_reversed AS points
        FROM brands b
        JOIN programs_order o
          ON o.tenant_id = b.tenant_id AND o.placed_at >= b.start AND o.placed_at <= %(now)s
        UNION ALL
        SELECT e.member_id, e.points
        FROM brands b
        JOIN programs_pointsentry e
          ON e.tenant_id = b.tenant_id AND e.kind = 'earn' AND e.source = 'bonus'
         AND e.created_at >= b.start AND e.created_at <= %(now)s
    ) earned
    GROUP BY member_id
)
{SELECT.format(occurrence=OCCURRENCE.format(natural="'tier:' || nt.id"))}
FROM flows f
JOIN brands b ON b.tenant_id = f.tenant_id
JOIN programs_member m ON m.tenant_id = f.tenant_id
LEFT JOIN programs_tier cur ON cur.id = m.tier_id
CROSS JOIN LATERAL (
    SELECT nt.id, nt.threshold FROM programs_tier nt
    WHERE nt.tenant_id = f.tenant_id AND nt.threshold > coalesce(cur.threshold, -1)
    ORDER BY nt.threshold LIMIT 1
) nt
LEFT JOIN counted v ON v.member_id = m.id
{LOCAL}
CROSS JOIN LATERAL (SELECT ceil(nt.threshold - coalesce(v.points, 0)) AS needed) q
WHERE {DUE} AND q.needed > 0 AND q.needed <= f.n
"""  # noqa: S608 - constants and parameters only

# At most once per D days ("bal:" + the local day number // D).
UNREDEEMED_BALANCE = f"""
WITH {FLOWS}
{SELECT.format(occurrence=OCCURRENCE.format(natural=BALANCE_PERIOD))}
FROM flows f
CROSS JOIN LATERAL (
    SELECT min(r.points_cost) AS cheapest FROM programs_reward r
    WHERE r.tenant_id = f.tenant_id AND r.active
) price
JOIN programs_member m
  ON m.tenant_id = f.tenant_id AND m.points_balance >= price.cheapest
 AND m.enrolled_at < %(now)s - f.n * interval '1 day'
{LOCAL}
WHERE {DUE}
  AND NOT EXISTS (
      SELECT 1 FROM programs_redemption r
      WHERE r.tenant_id = m.tenant_id AND r.member_id = m.id AND r.status <> 'cancelled'
        AND r.created_at > %(now)s - f.n * interval '1 day')
"""  # noqa: S608 - constants and parameters only

# Members enrolled on the (UTC) month and day of any date within two days of UTC's today —
# each an index probe per flow (member_tenant_enrolled_day; 29 February always) — then the
# member's zone decides. Feb 29 enrollments are kept on Feb 28 when the year has none.
ENROLLED_DAY = (
    "(extract(month FROM m.enrolled_at AT TIME ZONE 'UTC') * 100"
    " + extract(day FROM m.enrolled_at AT TIME ZONE 'UTC'))::int"
)
ANNIVERSARY = f"""
WITH {FLOWS}
{SELECT.format(occurrence=OCCURRENCE.format(natural="extract(year FROM z.local)::int::text"))}
FROM flows f
JOIN programs_member m ON m.tenant_id = f.tenant_id AND {ENROLLED_DAY} = ANY(%(enrolled_days)s)
{LOCAL}
CROSS JOIN LATERAL (SELECT (m.enrolled_at AT TIME ZONE mz.zone)::date AS day) e
WHERE {DUE}
  AND extract(year FROM e.day) < extract(year FROM z.local)
  AND (
      (extract(month FROM e.day), extract(day FROM e.day))
          = (extract(month FROM z.local), extract(day FROM z.local))
      OR (extract(month FROM e.day) = 2 AND extract(day FROM e.day) = 29
          AND extract(month FROM z.local) = 2 AND extract(day FROM z.local) = 28
          AND extract(month FROM z.local::date + 1) = 3)
  )
"""  # noqa: S608 - constants and parameters only

# trigger type → (its selection, the trigger setting that is N, N's default as in the spec)
SCANS: dict[str, tuple[str, str, int]] = {
    "birthday": (BIRTHDAY, "days_before", 0),
    "points_expiring": (POINTS_EXPIRING, "days", 30),
    "winback": (WINBACK, "days", 60),
    "near_next_tier": (NEAR_NEXT_TIER, "points", 100),
    "unredeemed_balance": (UNREDEEMED_BALANCE, "days", 30),
    "anniversary": (ANNIVERSARY, "days", 0),
}

# The scan's rows as runs (automations.services.flow_engine.ENTER_ROWS): the engine finds a
# member's number when the run walks.
DUE_ROWS = """
SELECT tenant_id, flow_id, member_id, NULL::bigint AS subscriber_id, 'm' || member_id AS person,
       occurrence, step, %(now)s AS entered_at, '{{}}'::jsonb AS context
FROM ({due}) due
"""


def due_sql(
    kind: str,
    *,
    now: datetime,
    tenant_id: int | None = None,
    segmented: bool = False,
    flow_ids: list[int] | None = None,
) -> tuple[str, dict]:
    """The SELECT of (tenant_id, flow_id, member_id, occurrence, step) that the scan of one
    trigger type enters: every brand's live flows of that type, or one brand's (or only
    `flow_ids` of it: a dry run's copy)."""
    template, setting, default = SCANS[kind]
    only = "AND f.tenant_id = %(tenant)s" if tenant_id is not None else ""
    if flow_ids is not None:
        only += " AND f.id = ANY(%(flow_ids)s)"
    sql = template.replace("{only_tenant}", only)
    params = {
        "kind": kind,
        "setting": setting,
        "default": default,
        "segmented": segmented,
        "now": now,
        "utc_day": now.astimezone(UTC).date(),
        "enrolled_days": _month_days(now),
        "tenant": tenant_id,
        "flow_ids": flow_ids,
    }
    return sql, params


def _month_days(now: datetime) -> list[int]:
    """month * 100 + day of the UTC dates within two days of now's, and 29 February."""
    today = now.astimezone(UTC).date()
    days = {(today + timedelta(days=k)) for k in range(-2, 3)}
    return sorted({d.month * 100 + d.day for d in days} | {229})


def flow_scans_run(
    *, now: datetime, tenant: Tenant | None = None, flow_ids: list[int] | None = None
) -> dict:
    """Enter every member a date trigger of a live flow holds for at `now` (all brands, or
    one; or only its `flow_ids`): once per occurrence, whatever how often the scan runs or
    where it was killed.
    Returns {"entered": {trigger type: runs begun}, "tenants": [brands with new runs]}.

    WARNING: with no tenant, this reads and writes every brand's flows, members and runs on
    purpose (raw SQL, no tenant scope): each row it writes takes its tenant from the flow."""
    entered: dict[str, int] = {}
    tenants: set[int] = set()
    tenant_id = tenant.pk if tenant is not None else None
    for kind in SCANS:
        only = {"tenant_id": tenant_id, "flow_ids": flow_ids}
        by_tenant = _enter_plain(kind, now=now, **only)
        by_tenant_segmented = _enter_segmented(kind, now=now, **only)
        for counts in (by_tenant, by_tenant_segmented):
            for tid, count in counts.items():
                entered[kind] = entered.get(kind, 0) + count
                tenants.add(tid)
        entered.setdefault(kind, 0)
    return {"entered": entered, "tenants": sorted(tenants)}


def _enter_plain(kind: str, *, now: datetime, **only) -> dict[int, int]:
    """Flows without a segment filter: one statement (runs and their log rows) for all."""
    due, params = due_sql(kind, now=now, segmented=False, **only)
    with transaction.atomic(), connection.cursor() as cursor:
        return enter_rows(cursor, DUE_ROWS.format(due=due), params)


def _enter_segmented(kind: str, *, now: datetime, **only) -> dict[int, int]:
    """Flows with a segment filter: the trigger's candidates, then those in the segment."""
    due, params = due_sql(kind, now=now, segmented=True, **only)
    with connection.cursor() as cursor:
        cursor.execute(due, params)
        rows = cursor.fetchall()
    if not rows:
        return {}
    by_flow: dict[tuple[int, int], list[Entry]] = defaultdict(list)
    for row_tenant, flow_id, member_id, occurrence, _step in rows:
        by_flow[row_tenant, flow_id].append(
            Entry(flow_id=flow_id, member_id=member_id, subscriber_id=None, occurrence=occurrence)
        )
    counts: dict[int, int] = defaultdict(int)
    brands = Tenant.objects.in_bulk({t for t, _ in by_flow})
    for (row_tenant, flow_id), entries in by_flow.items():
        brand = brands[row_tenant]
        with tenant_scope(brand):
            flow = Flow.objects.select_related("segment").filter(pk=flow_id).first()
            if flow is None or flow.segment is None:
                continue
            for start in range(0, len(entries), SEGMENT_CHUNK):
                chunk = in_segment(brand, flow.segment, entries[start : start + SEGMENT_CHUNK], now)
                with transaction.atomic():
                    counts[row_tenant] += flow_runs_enter(tenant=brand, entries=chunk, now=now)
    return dict(counts)
