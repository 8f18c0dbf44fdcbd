"""Reads of flows for the dashboard: single flows, the list with its figures, each step's
figures, runs (a flow's, a member's) and a run's log — a fixed number of grouped queries per
page, whatever the number of flows, runs or texts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.http import Http404

from automations.flows.spec import CONDITIONS, STEP_TYPES
from automations.models import Flow, FlowDryRun, FlowRun, FlowRunLog
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope


def get_flow(tenant: Tenant, flow_id: int) -> Flow:
    """The same 404 for "missing" and "another brand's"."""
    with tenant_scope(tenant):
        flow = Flow.objects.filter(pk=flow_id).first()
    if flow is None:
        raise Http404("No such flow.")
    return flow


def get_dry_run(flow: Flow, job_id: int) -> FlowDryRun:
    with tenant_scope(flow.tenant):
        job = FlowDryRun.objects.filter(pk=job_id, flow=flow).first()
    if job is None:
        raise Http404("No such dry run.")
    return job


def get_run(flow: Flow, run_id: int) -> FlowRun:
    with tenant_scope(flow.tenant):
        run = (
            FlowRun.objects.select_related("member", "subscriber")
            .filter(pk=run_id, flow=flow)
            .first()
        )
    if run is None:
        raise Http404("No such run.")
    return run


@dataclass
class FlowFigures:
    entered: int = 0
    active: int = 0
    sent: int = 0
    clicks: int = 0
    orders: int = 0
    revenue: Decimal = Decimal(0)


# Per flow of the brand: runs (all, active), texts its steps queued, clicked ones, and what
# the attribution scan credited to the flow's texts.
RUNS = """
SELECT flow_id, count(*), count(*) FILTER (WHERE status = 'active')
FROM automations_flowrun WHERE tenant_id = %s AND flow_id = ANY(%s) GROUP BY flow_id
"""
SENT_AND_CLICKED = """
SELECT g.flow_id, count(*), count(*) FILTER (WHERE EXISTS (
    SELECT 1 FROM messaging_shortlink l
    WHERE l.tenant_id = g.tenant_id AND l.message_dedupe_key = g.detail
      AND l.first_clicked_at IS NOT NULL))
FROM automations_flowrunlog g
WHERE g.tenant_id = %s AND g.action = 'sent' {only}
GROUP BY g.flow_id
"""
ATTRIBUTED = """
SELECT source_ref, count(*), coalesce(sum(revenue), 0) FROM messaging_attribution
WHERE tenant_id = %s AND source = 'flow' {only}
GROUP BY source_ref
"""


def flow_figures(tenant: Tenant, flows: list[Flow]) -> dict[int, FlowFigures]:
    """Entered, under way, texts, clicks, attributed orders and revenue of each flow: three
    grouped queries."""
    figures: dict[int, FlowFigures] = defaultdict(FlowFigures)
    ids = [f.pk for f in flows]
    with connection.cursor() as cursor:
        cursor.execute(RUNS, [tenant.pk, ids])
        for flow_id, entered, active in cursor.fetchall():
            figures[flow_id].entered, figures[flow_id].active = entered, active
        cursor.execute(SENT_AND_CLICKED.format(only="AND g.flow_id = ANY(%s)"), [tenant.pk, ids])
        for flow_id, sent, clicks in cursor.fetchall():
            figures[flow_id].sent, figures[flow_id].clicks = sent, clicks
        cursor.execute(
            ATTRIBUTED.format(only="AND source_ref = ANY(%s)"),
            [tenant.pk, [str(i) for i in ids]],
        )
        for ref, orders, revenue in cursor.fetchall():
            figures[int(ref)].orders, figures[int(ref)].revenue = orders, revenue
    return {flow.pk: figures[flow.pk] for flow in flows}


def flow_list(tenant: Tenant) -> list[Flow]:
    with tenant_scope(tenant):
        return list(Flow.objects.order_by("name", "id"))


STEP_ACTIONS = """
SELECT step, action, detail = 'yes', count(*) FROM automations_flowrunlog
WHERE tenant_id = %s AND flow_id = %s GROUP BY step, action, detail = 'yes'
"""
STEP_CLICKS = """
SELECT g.step, count(*) FROM automations_flowrunlog g
WHERE g.tenant_id = %s AND g.flow_id = %s AND g.action = 'sent' AND EXISTS (
    SELECT 1 FROM messaging_shortlink l
    WHERE l.tenant_id = g.tenant_id AND l.message_dedupe_key = g.detail
      AND l.first_clicked_at IS NOT NULL)
GROUP BY g.step
"""
WAITING = """
SELECT step, count(*) FROM automations_flowrun
WHERE tenant_id = %s AND flow_id = %s AND status = 'active' GROUP BY step
"""


@dataclass
class StepFigures:
    actions: dict = field(default_factory=dict)  # action → count ("branched" split yes/no)
    clicks: int = 0
    waiting: int = 0  # runs at this step now

    @property
    def reached(self) -> int:
        return sum(v for k, v in self.actions.items() if k not in ("entered", "yes", "no"))


def flow_step_figures(flow: Flow) -> dict[str, StepFigures]:
    """What each step has done so far: three grouped queries."""
    found: dict[str, StepFigures] = defaultdict(StepFigures)
    with connection.cursor() as cursor:
        cursor.execute(STEP_ACTIONS, [flow.tenant_id, flow.pk])
        for step, action, yes, n in cursor.fetchall():
            actions = found[step].actions
            if action == "branched":
                actions["yes" if yes else "no"] = actions.get("yes" if yes else "no", 0) + n
            actions[action] = actions.get(action, 0) + n
        cursor.execute(STEP_CLICKS, [flow.tenant_id, flow.pk])
        for step, n in cursor.fetchall():
            found[step].clicks = n
        cursor.execute(WAITING, [flow.tenant_id, flow.pk])
        for step, n in cursor.fetchall():
            found[step].waiting = n
    return found


def flow_runs(flow: Flow, *, before_id: int | None = None, limit: int = 50) -> list[FlowRun]:
    """Newest first, a page at a time (keyset on id)."""
    with tenant_scope(flow.tenant):
        runs = FlowRun.objects.filter(flow=flow).select_related("member", "subscriber")
        if before_id is not None:
            runs = runs.filter(id__lt=before_id)
        return list(runs.order_by("-id")[:limit])


def member_runs(tenant: Tenant, member_id: int, *, limit: int = 100) -> list[FlowRun]:
    """A member's runs in every flow, newest first."""
    with tenant_scope(tenant):
        return list(
            FlowRun.objects.filter(member_id=member_id)
            .select_related("flow")
            .order_by("-id")[:limit]
        )


def run_log(run: FlowRun) -> list[FlowRunLog]:
    with tenant_scope(run.tenant):
        return list(FlowRunLog.objects.filter(run=run).order_by("id"))


def dry_runs(flow: Flow, limit: int = 5) -> list[FlowDryRun]:
    with tenant_scope(flow.tenant):
        return list(FlowDryRun.objects.filter(flow=flow).order_by("-id")[:limit])


# --- the diagram ----------------------------------------------------------------------------


@dataclass
class Node:
    """One step in the diagram: the steps after it as children (a branch: its yes and no
    ways), or a pointer to a step drawn already (paths that meet again)."""

    id: str
    step: dict | None
    children: list[tuple[str, Node]] = field(default_factory=list)  # (label, node)
    goto: bool = False  # drawn elsewhere: "continues at …"
    end: bool = False  # the run ends here
    text: str = ""  # what the step does, in words
    figures: StepFigures | None = None


def describe(step: dict, names: dict) -> str:
    """A step in words ("Wait 2 days, then until 10:00"); `names` has the brand's tiers,
    rewards and segments by id."""
    kind = step["type"]
    if kind == "send_sms":
        return f"Text: “{step.get('body', '')}”"
    if kind == "wait":
        parts = [
            f"{step[u]} {u[:-1] if step[u] == 1 else u}"
            for u in ("days", "hours", "minutes")
            if step.get(u)
        ]
        text = "Wait " + ", ".join(parts) if parts else "Wait"
        if step.get("until"):
            text += f"{', then' if parts else ''} until {step['until']} local time"
        return text
    if kind == "branch":
        condition = step.get("if") or {}
        label = CONDITIONS.get(condition.get("type", ""), "?")
        if condition.get("type") == "tier_is":
            label += " " + names["tiers"].get(condition.get("tier_id"), "(deleted tier)")
        if condition.get("type") == "balance_gte":
            label += f" {condition.get('points')}"
        return f"If: {label.lower()}?"
    if kind == "award_points":
        return f"Award {step.get('points')} points"
    if kind == "issue_reward":
        return "Issue a code for " + names["rewards"].get(step.get("reward_id"), "(deleted reward)")
    if kind in ("add_tag", "remove_tag"):
        return f"{'Add' if kind == 'add_tag' else 'Remove'} the tag “{step.get('tag')}”"
    return STEP_TYPES.get(kind, kind)


def diagram(
    graph: dict, names: dict | None = None, figures: dict[str, StepFigures] | None = None
) -> Node | None:
    """The step graph as a tree from its first step, each step drawn once, with each step in
    words and what it has done."""
    steps, drawn = graph.get("steps", {}), set()
    names = names or {"tiers": {}, "rewards": {}, "segments": {}}
    figures = figures or {}

    def node(sid: str | None) -> Node:
        if not sid or sid not in steps:
            return Node(id="", step=None, end=True)
        if sid in drawn:
            return Node(id=sid, step=steps[sid], goto=True)
        drawn.add(sid)
        step = steps[sid]
        found = Node(id=sid, step=step, text=describe(step, names), figures=figures.get(sid))
        if step["type"] == "branch":
            found.children = [("yes", node(step.get("yes"))), ("no", node(step.get("no")))]
        elif step["type"] != "end":
            found.children = [("", node(step.get("next")))]
        return found

    start = graph.get("start")
    return node(start) if start else None
