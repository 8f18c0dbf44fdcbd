"""A brand's flow work in one go: act on new events, then take the due runs' steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from django.db import connection

from automations.services.flow_engine import flow_runs_advance
from automations.services.flow_triggers import events_process
from loyaltysms.models import Tenant


def flows_work_once(
    *, tenant: Tenant, now: Callable[[], datetime], seconds: float | None = None
) -> dict:
    """Events first (so a run an event ends takes no more steps), then the runs due — again
    while either had a full batch, until `seconds` have passed (then "more" is True: call
    again). `now` is the clock, read afresh for each round."""
    deadline = None if seconds is None else time.monotonic() + seconds
    events = runs = texts = 0
    while True:
        moment = now()
        read = events_process(tenant=tenant, now=moment)
        advanced = flow_runs_advance(tenant=tenant, now=moment)
        events, runs, texts = events + read, runs + advanced.runs, texts + advanced.texts
        if not read and not advanced.runs:
            return {"events": events, "runs": runs, "texts": texts, "more": False}
        if deadline is not None and time.monotonic() > deadline:
            return {"events": events, "runs": runs, "texts": texts, "more": True}


TENANTS_WITH_FLOW_WORK = """
SELECT tenant_id FROM (
    SELECT DISTINCT tenant_id FROM programs_loyaltyevent WHERE processed_at IS NULL
    UNION
    SELECT DISTINCT tenant_id FROM automations_flowrun
    WHERE status = 'active' AND next_run_at <= %s
) t
"""


def tenants_with_flow_work(now: datetime) -> list[int]:
    """Brands with outbox events to act on or flow runs due.
    WARNING: reads every tenant's outbox and runs, to find whom to wake."""
    with connection.cursor() as cursor:
        cursor.execute(TENANTS_WITH_FLOW_WORK, [now])
        return [row[0] for row in cursor.fetchall()]
