"""Flows: creating, changing, switching on and off (running them is in flow_engine.py).

Everything a flow says is checked by automations.flows.spec against the brand's own tiers,
rewards and segments before it is saved; problems come back together, keyed by where they
are ("trigger.days", "steps.s2.body"). A live flow may be changed: runs under way carry on
from the step they are at (a step that no longer exists ends them).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from automations.flows.spec import (
    FlowInvalid,
    Problems,
    check_exits,
    check_steps,
    check_trigger,
)
from automations.models import EntryLimit, Flow, FlowAudience, FlowRun, FlowStatus, RunStatus
from loyaltysms.models import Tenant, User
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from programs.models import Reward, Tier
from segments.models import Segment


def _checked(tenant: Tenant, fields: dict) -> dict:
    problems = Problems({})
    with tenant_scope(tenant):
        tier_ids = set(Tier.objects.values_list("id", flat=True))
        reward_ids = set(Reward.objects.values_list("id", flat=True))
        segment_ids = set(Segment.objects.values_list("id", flat=True))
    name = (fields.get("name") or "").strip()
    if not 1 <= len(name) <= 100:
        problems.add("name", "1 to 100 characters")
    clean = {
        "name": name,
        "description": (fields.get("description") or "").strip(),
        "trigger": check_trigger(fields.get("trigger"), problems, tier_ids=tier_ids),
        "steps": check_steps(
            fields.get("steps"), problems, tier_ids=tier_ids, reward_ids=reward_ids
        ),
        "exit_on": check_exits(fields.get("exit_on", []), problems),
    }
    entry_limit = fields.get("entry_limit", EntryLimit.EVERY_TIME)
    if entry_limit not in EntryLimit.values:
        problems.add("entry_limit", f"one of {', '.join(EntryLimit.values)}")
    audience = fields.get("audience", FlowAudience.ANYONE)
    if audience not in FlowAudience.values:
        problems.add("audience", f"one of {', '.join(FlowAudience.values)}")
    segment_id = fields.get("segment_id")
    if segment_id is not None and segment_id not in segment_ids:
        problems.add("segment_id", "no such segment")
    if problems.found:
        raise FlowInvalid("The flow can't be saved as it is.", errors=problems.found)
    clean |= {"entry_limit": entry_limit, "audience": audience, "segment_id": segment_id}
    clean["trigger_type"] = clean["trigger"]["type"]
    return clean


FIELDS = (
    "name",
    "description",
    "trigger",
    "steps",
    "exit_on",
    "entry_limit",
    "audience",
    "segment_id",
)


@transaction.atomic
def flow_create(
    *, tenant: Tenant, now: datetime, actor: User | None = None, template: str = "", **fields
) -> Flow:
    """A draft flow (nobody enters until it is switched on)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown flow fields: {', '.join(sorted(unknown))}")
    clean = _checked(tenant, fields)
    with tenant_scope(tenant):
        flow = Flow.objects.create(
            **clean, template=template, created_by=actor, created_at=now, updated_at=now
        )
    audit(tenant=tenant, actor=actor, action="flow.created", target=flow.name)
    return flow


@transaction.atomic
def flow_update(*, flow: Flow, now: datetime, actor: User | None = None, **changes) -> Flow:
    """Change any of the fields (the same checks as creating it); the version goes up."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown flow fields: {', '.join(sorted(unknown))}")
    tenant = flow.tenant
    with tenant_scope(tenant):
        locked = Flow.objects.select_for_update().get(pk=flow.pk)
        current = {name: getattr(locked, name) for name in FIELDS}
        clean = _checked(tenant, {**current, **changes})
        for name, value in clean.items():
            setattr(locked, name, value)
        locked.version += 1
        locked.updated_at = now
        locked.save()
    audit(tenant=tenant, actor=actor, action="flow.updated", target=locked.name)
    return locked


@transaction.atomic
def flow_set_status(*, flow: Flow, status: str, now: datetime, actor: User | None = None) -> Flow:
    """Live (people enter and runs go on), paused (nobody enters; runs wait where they
    are) or back to draft."""
    if status not in FlowStatus.values:
        raise FlowInvalid(f"A flow is {', '.join(FlowStatus.values)}.")
    tenant = flow.tenant
    with tenant_scope(tenant):
        locked = Flow.objects.select_for_update().get(pk=flow.pk)
        if locked.status == status:
            return locked
        locked.status = status
        if status == FlowStatus.LIVE and locked.published_at is None:
            locked.published_at = now
        locked.updated_at = now
        locked.save(update_fields=["status", "published_at", "updated_at"])
    audit(tenant=tenant, actor=actor, action=f"flow.{status}", target=locked.name)
    return locked


@transaction.atomic
def flow_delete(*, flow: Flow, now: datetime, actor: User | None = None) -> int:
    """Delete a flow with its runs (texts already queued still go, through the dispatcher's
    checks). Returns how many runs were under way."""
    tenant = flow.tenant
    with tenant_scope(tenant):
        stopped = FlowRun.objects.filter(flow=flow, status=RunStatus.ACTIVE).count()
        name = flow.name
        # Its runs and their log by plain DELETEs: Django's cascade would load every run.
        with connection.cursor() as cursor:
            for table in (
                "automations_flowrunlog",
                "automations_flowrun",
                "automations_flowdryrun",
            ):
                cursor.execute(
                    f"DELETE FROM {table} WHERE tenant_id = %s AND flow_id = %s",  # noqa: S608
                    [tenant.pk, flow.pk],
                )
        Flow.objects.filter(pk=flow.pk).delete()
    audit(tenant=tenant, actor=actor, action="flow.deleted", target=name, runs_stopped=stopped)
    return stopped
