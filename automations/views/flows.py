"""Dashboard pages of flows: the list with each flow's figures and the prebuilt gallery, the
flow's page (its diagram with what each step has done, compliance warnings, on/off), the
editor, dry runs (a worker does them; the page shows progress, then the report), runs and a
run's history, a member's runs across flows, and delete behind a confirmation."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from automations.flows import selectors
from automations.flows.editor import CHOICES, TRIGGER_N, FlowEditor
from automations.flows.lint import flow_lint
from automations.flows.spec import STEP_TYPES, TRIGGERS, FlowInvalid
from automations.models import DryRunStatus, FlowStatus
from automations.services import flows as services
from automations.services.flow_dryrun import MAX_DAYS, dry_run_progress, flow_dry_run_queue
from automations.services.flow_install import flow_install, prebuilt_catalogue
from loyaltysms.models import Role
from loyaltysms.tenancy.context import tenant_scope
from loyaltysms.views import render_in_brand_zone, tenant_view
from messaging.services.setup import messaging_settings_get
from programs.models import Reward
from programs.selectors import get_member_by_id
from programs.services.program import program_get, tier_ladder_get
from segments.selectors import segment_list

RUNS_PAGE = 50
DRY_RUN_LIMIT = timedelta(hours=1)
BLANK = {
    "name": "",
    "trigger": {"type": "member_enrolled"},
    "steps": {"start": "s1", "steps": {"s1": {"type": "send_sms", "body": "", "next": None}}},
}


def _page(request, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render_in_brand_zone(request, template, {"flows_tab": True, **context}, status)


# --- the list and the gallery ---------------------------------------------------------------
@require_GET
@tenant_view()
def flows(request):
    tenant = request.tenant
    found = selectors.flow_list(tenant)
    figures = selectors.flow_figures(tenant, found)
    return _page(
        request,
        "automations/flows.html",
        {
            "rows": [{"flow": f, "figures": figures[f.pk]} for f in found],
            "catalogue": prebuilt_catalogue(tenant),
            "triggers": TRIGGERS,
            "currency": program_get(tenant).currency,
        },
    )


@require_POST
@tenant_view()
def flow_install_view(request):
    """Install a prebuilt flow as a draft; what the brand lacks comes back as a message."""
    key = request.POST.get("key", "")
    try:
        flow = flow_install(
            tenant=request.tenant,
            key=key,
            now=timezone.now(),
            actor=request.user,
            shop_url=request.POST.get("shop_url", "").strip(),
            survey_url=request.POST.get("survey_url", "").strip(),
        )
    except FlowInvalid as error:
        for problems in (error.errors or {}).values():
            for problem in problems:
                messages.error(request, problem)
        if not error.errors:
            messages.error(request, error.detail)
        return redirect(f"{reverse('flows')}#prebuilt-{key}")
    messages.success(
        request,
        f"Installed {flow.name} as a draft. Read it through, try a dry run, then switch it on.",
    )
    return redirect("flow_detail", flow.pk)


# --- the flow's page ------------------------------------------------------------------------
@require_GET
@tenant_view()
def flow_detail(request, flow_id: int):
    tenant = request.tenant
    flow = selectors.get_flow(tenant, flow_id)
    figures = selectors.flow_figures(tenant, [flow])[flow.pk]
    names = _names(tenant)
    return _page(
        request,
        "automations/flow_detail.html",
        {
            "flow": flow,
            "figures": figures,
            "tree": selectors.diagram(flow.steps, names, selectors.flow_step_figures(flow)),
            "warnings": flow_lint(flow, messaging_settings_get(tenant)),
            "trigger_label": TRIGGERS.get(flow.trigger_type, flow.trigger_type),
            "trigger_n": _trigger_n(flow.trigger),
            "dry_runs": selectors.dry_runs(flow),
            "max_days": MAX_DAYS,
            "currency": program_get(tenant).currency,
            "segment_name": names["segments"].get(flow.segment_id, ""),
        },
    )


def _trigger_n(trigger: dict) -> str:
    spec = TRIGGER_N.get(trigger.get("type", ""))
    if not spec:
        return ""
    return f"{spec[1]}: {trigger.get(spec[0], spec[2])}"


def _names(tenant) -> dict:
    """Tier, reward and segment names by id, for steps that name them."""
    with tenant_scope(tenant):
        rewards = dict(Reward.objects.values_list("id", "name"))
    return {
        "tiers": {t.pk: t.name for t in tier_ladder_get(tenant)},
        "rewards": rewards,
        "segments": {s.pk: s.name for s in segment_list(tenant)},
    }


@require_POST
@tenant_view()
def flow_status(request, flow_id: int):
    """Switch on, pause, or take back to draft."""
    flow = selectors.get_flow(request.tenant, flow_id)
    status = request.POST.get("status", "")
    if status not in FlowStatus.values:
        messages.error(request, "Choose live, paused or draft.")
        return redirect("flow_detail", flow.pk)
    services.flow_set_status(flow=flow, status=status, now=timezone.now(), actor=request.user)
    said = {
        FlowStatus.LIVE: f"{flow.name} is on: people enter as their trigger happens.",
        FlowStatus.PAUSED: f"{flow.name} is paused: nobody enters; runs wait where they are.",
        FlowStatus.DRAFT: f"{flow.name} is a draft again.",
    }[status]
    messages.success(request, said)
    return redirect("flow_detail", flow.pk)


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def flow_delete(request, flow_id: int):
    flow = selectors.get_flow(request.tenant, flow_id)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        stopped = services.flow_delete(flow=flow, now=timezone.now(), actor=request.user)
        messages.success(request, f"Deleted {flow.name}; {stopped} runs under way stopped.")
        return redirect("flows")
    figures = selectors.flow_figures(request.tenant, [flow])[flow.pk]
    return _page(request, "automations/flow_delete.html", {"flow": flow, "figures": figures})


# --- the editor -----------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def flow_new(request):
    return _editor(request, None)


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def flow_edit(request, flow_id: int):
    return _editor(request, selectors.get_flow(request.tenant, flow_id))


def _editor(request, flow):
    tenant = request.tenant
    status = 200
    if request.method == "GET":
        if flow is not None:
            editor = FlowEditor.from_flow(flow)
        else:
            editor = FlowEditor(
                fields={
                    "name": "",
                    "description": "",
                    "trigger": dict(BLANK["trigger"]),
                    "entry_limit": "every",
                    "audience": "anyone",
                    "segment_id": None,
                    "exit_on": [],
                },
                rows=[],
                start="",
            )
            editor.apply("add:send_sms")
    else:
        editor = FlowEditor.from_post(request.POST)
        action = request.POST.get("action", "")
        if (
            action == "save"
            and flow is not None
            and request.POST.get("version") != str(flow.version)
        ):
            editor.errors["flow"] = [
                "Someone saved this flow since you opened it: open it again to see their "
                "changes (yours are below, not saved)."
            ]
            action = ""
            status = 409
        if action == "save":
            saved = _save(request, flow, editor)
            if saved is not None:
                messages.success(request, f"Saved {saved.name}.")
                return redirect("flow_detail", saved.pk)
            status = 422
        else:
            editor.apply(action)
    program = program_get(tenant)
    with tenant_scope(tenant):
        rewards = list(Reward.objects.filter(active=True).order_by("points_cost"))
    return _page(
        request,
        "automations/flow_edit.html",
        {
            "flow": flow,
            "editor": editor,
            "choices": CHOICES,
            "step_types": STEP_TYPES,
            "tiers": tier_ladder_get(tenant),
            "rewards": rewards,
            "segments": segment_list(tenant),
            "points_name": program.points_name,
        },
        status=status,
    )


def _save(request, flow, editor: FlowEditor):
    if any(row.errors for row in editor.rows):  # two steps with one id
        return None
    fields = editor.service_fields()
    try:
        if flow is None:
            return services.flow_create(
                tenant=request.tenant, now=timezone.now(), actor=request.user, **fields
            )
        return services.flow_update(flow=flow, now=timezone.now(), actor=request.user, **fields)
    except FlowInvalid as error:
        editor.attach(error.errors or {"flow": [error.detail]})
    return None


# --- dry runs -------------------------------------------------------------------------------
@require_POST
@tenant_view()
def flow_dry_run_start(request, flow_id: int):
    flow = selectors.get_flow(request.tenant, flow_id)
    try:
        days = int(request.POST.get("days", "30"))
        job = flow_dry_run_queue(flow=flow, days=days, now=timezone.now(), actor=request.user)
    except (ValueError, FlowInvalid):
        messages.error(request, f"A dry run looks back 1 to {MAX_DAYS} days.")
        return redirect("flow_detail", flow.pk)
    return redirect("flow_dry_run", flow.pk, job.pk)


@require_GET
@tenant_view()
def flow_dry_run(request, flow_id: int, job_id: int):
    flow = selectors.get_flow(request.tenant, flow_id)
    job = selectors.get_dry_run(flow, job_id)
    template = (
        "automations/_flow_dry_run_body.html"
        if request.headers.get("HX-Request")
        else "automations/flow_dry_run.html"
    )
    # A worker killed mid-run leaves it running for ever: past the task's time limit, lost.
    lost = job.status == DryRunStatus.RUNNING and job.started_at < timezone.now() - DRY_RUN_LIMIT
    report = job.report or {}
    steps = report.get("steps", {})
    ordered = [(sid, flow.steps["steps"].get(sid), steps[sid]) for sid in steps]
    progress = dry_run_progress(job)  # None: not known just now (the cache is away)
    return _page(
        request,
        template,
        {
            "flow": flow,
            "job": job,
            "progress": None if progress is None else round(100 * progress),
            "working": job.status in (DryRunStatus.QUEUED, DryRunStatus.RUNNING) and not lost,
            "lost": lost,
            "report": report,
            "ordered": ordered,
            "edited_since": job.flow_version != flow.version,
            "currency": program_get(request.tenant).currency,
        },
    )


# --- runs -----------------------------------------------------------------------------------
@require_GET
@tenant_view()
def flow_runs(request, flow_id: int):
    flow = selectors.get_flow(request.tenant, flow_id)
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        before = None
    runs = selectors.flow_runs(flow, before_id=before, limit=RUNS_PAGE + 1)
    more = len(runs) > RUNS_PAGE
    runs = runs[:RUNS_PAGE]
    return _page(
        request,
        "automations/flow_runs.html",
        {"flow": flow, "runs": runs, "next_before": runs[-1].pk if more else None},
    )


@require_GET
@tenant_view()
def flow_run(request, flow_id: int, run_id: int):
    flow = selectors.get_flow(request.tenant, flow_id)
    run = selectors.get_run(flow, run_id)
    return _page(
        request,
        "automations/flow_run.html",
        {"flow": flow, "run": run, "log": selectors.run_log(run)},
    )


@require_GET
@tenant_view()
def member_flow_runs(request, member_id: int):
    """A member's runs in every flow (their history with the brand's automations)."""
    member = get_member_by_id(request.tenant, member_id)
    return _page(
        request,
        "automations/member_flow_runs.html",
        {"member": member, "runs": selectors.member_runs(request.tenant, member.pk)},
    )
