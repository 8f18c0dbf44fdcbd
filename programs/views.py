"""Dashboard pages of the loyalty program: members, a member's ledger, program settings,
tiers, rewards, multiplier events, and the member import."""

from __future__ import annotations

import re

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from loyaltysms.models import Role
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import tenant_scope
from loyaltysms.tenancy.tasks import enqueue_on_commit
from loyaltysms.views import _form_errors, keyset_page, tenant_view
from programs import forms, selectors
from programs.models import Member, MemberImport, MultiplierEvent, Reward
from programs.services import imports as import_services
from programs.services import members as member_services
from programs.services import program as program_services
from programs.tasks import import_members as import_members_task

PAGE = 50
LEDGER_PAGE = 50
UPLOAD_MAX_BYTES = 20 * 2**20


def _int(value: str | None) -> int | None:
    """A query string's id: ASCII digits that fit a bigint, else None (never a 500)."""
    return int(value) if value and re.fullmatch(r"[0-9]{1,18}", value) else None


def _problem_to_form(form, error: ProblemError) -> None:
    form.add_error(None, error.detail)
    for field, field_errors in (error.errors or {}).items():
        if field in form.fields:
            form.add_error(field, field_errors)


@require_http_methods(["GET"])
@tenant_view()
def members(request):
    """Members, newest first, searchable; keyset pages (?after=<id>)."""
    q = request.GET.get("q", "").strip()[:200]
    tier_id = _int(request.GET.get("tier"))
    after = _int(request.GET.get("after"))
    with tenant_scope(request.tenant):
        queryset = selectors.member_search(
            Member.objects.select_related("tier"), q=q, tier_id=tier_id
        )
        if after:
            queryset = queryset.filter(pk__lt=after)
        page = list(queryset.order_by("-pk")[: PAGE + 1])
        ladder = program_services.tier_ladder_get(request.tenant)
    page, next_url = keyset_page(request, page, PAGE)
    return render(
        request,
        "programs/members.html",
        {
            "members": page,
            "q": q,
            "tier_id": tier_id,
            "tiers": ladder,
            "next_url": next_url,
            "first_page": after is None,
            "program": program_services.program_get(request.tenant),
        },
    )


@require_http_methods(["GET"])
@tenant_view()
def member_detail(request, member_id: int):
    member = selectors.get_member_by_id(request.tenant, member_id)
    before = _int(request.GET.get("before"))
    return _member_page(request, member, forms.AdjustmentForm(), before=before)


def _member_page(request, member, adjustment_form, *, before=None, status=200):
    now = timezone.now()
    context = selectors.member_context(request.tenant, [member], now)
    with tenant_scope(request.tenant):
        ledger = selectors.ledger_for(member)
        if before:
            ledger = ledger.filter(pk__lt=before)
        entries = list(ledger.order_by("-pk")[: LEDGER_PAGE + 1])
        redemptions = list(member.redemptions.select_related("reward").order_by("-pk")[:20])
        tier_changes = list(selectors.tier_history(member).order_by("-pk")[:10])
    progress = selectors.next_tier_for(member, context)
    percent = None
    if progress and progress["threshold"]:
        percent = min(100, int(progress["value"] * 100 / progress["threshold"]))
    return render(
        request,
        "programs/member_detail.html",
        {
            "member": member,
            "program": context.program,
            "progress": progress,
            "progress_percent": percent,
            "expiring": context.expiring.get(member.pk, []),
            "entries": entries[:LEDGER_PAGE],
            "older_url": f"?before={entries[LEDGER_PAGE - 1].pk}"
            if len(entries) > LEDGER_PAGE
            else None,
            "redemptions": redemptions,
            "tier_changes": tier_changes,
            "form": adjustment_form,
            "can_adjust": request.membership.allows(Role.MARKETER),
        },
        status=status,
    )


@require_POST
@tenant_view(write=Role.MARKETER)
def member_adjust(request, member_id: int):
    member = selectors.get_member_by_id(request.tenant, member_id)
    form = forms.AdjustmentForm(request.POST)
    if form.is_valid():
        try:
            with tenant_scope(request.tenant):
                member_services.points_adjust(
                    member=member,
                    points=form.cleaned_data["points"],
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                    actor=request.user,
                )
        except ProblemError as error:
            _problem_to_form(form, error)
        else:
            messages.success(request, f"Adjusted {form.cleaned_data['points']:+d} points.")
            return redirect("member_detail", member_id=member.pk)
    member = selectors.get_member_by_id(request.tenant, member_id)
    return _member_page(request, member, form, status=422)


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.MARKETER)
def member_import(request):
    """Upload a CSV; a worker imports it while the import's page shows progress."""
    form = forms.ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > UPLOAD_MAX_BYTES:
            form.add_error("file", f"Files up to {UPLOAD_MAX_BYTES // 2**20} MB; split it.")
        else:
            content = upload.read().decode("utf-8-sig", errors="replace")
            job = import_services.member_import_queue(
                tenant=request.tenant, filename=upload.name, content=content, user=request.user
            )
            enqueue_on_commit(import_members_task, request.tenant.pk, job.pk)
            return redirect("member_import_detail", import_id=job.pk)
    with tenant_scope(request.tenant):
        recent = list(MemberImport.objects.order_by("-pk")[:10])
    return render(
        request,
        "programs/member_import.html",
        {"form": form, "imports": recent},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET"])
@tenant_view()
def member_import_detail(request, import_id: int):
    job = selectors.get_member_import(request.tenant, import_id)
    partial = request.headers.get("HX-Request") == "true"  # htmx polling for progress
    template = "programs/_import_progress.html" if partial else "programs/import_detail.html"
    return render(request, template, {"job": job})


def _settings_page(request, template: str, *, status: int = 200, **extra):
    tenant = request.tenant
    with tenant_scope(tenant):
        ladder = program_services.tier_ladder_get(tenant)
        context = {
            "program": program_services.program_get(tenant),
            "tiers": ladder,
            "can_admin": request.membership.allows(Role.ADMIN),
            **extra,
        }
        if "rewards" not in context:
            context["rewards"] = list(Reward.objects.all())
        if "events" not in context:
            context["events"] = list(MultiplierEvent.objects.select_related("tier"))
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def program_settings(request):
    tenant = request.tenant
    with tenant_scope(tenant):
        instance = program_services.program_get(tenant)
        fresh = type(instance).objects.get(pk=instance.pk)
    form = forms.ProgramForm(request.POST or None, instance=fresh)
    event_form = forms.MultiplierEventForm(
        ladder=program_services.tier_ladder_get(tenant), zone=tenant.timezone
    )
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            with tenant_scope(tenant):
                program_services.program_update(program=instance, actor=request.user, **changes)
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, "Program settings saved." if changes else "No changes.")
            return redirect("program_settings")
    return _settings_page(
        request,
        "programs/program_settings.html",
        form=form,
        event_form=event_form,
        program_tab="settings",
        status=422 if form.errors else 200,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def multiplier_event_create(request):
    tenant = request.tenant
    ladder = program_services.tier_ladder_get(tenant)
    with tenant_scope(tenant):
        event_form = forms.MultiplierEventForm(request.POST, ladder=ladder, zone=tenant.timezone)
        if event_form.is_valid():
            data = event_form.cleaned_data
            program_services.multiplier_event_create(
                tenant=tenant,
                name=data["name"],
                multiplier=data["multiplier"],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                tier=data["tier"],
                actor=request.user,
            )
            messages.success(request, f"Added {data['name']}.")
            return redirect("program_settings")
        form = forms.ProgramForm(instance=program_services.program_get(tenant))
    return _settings_page(
        request,
        "programs/program_settings.html",
        form=form,
        event_form=event_form,
        program_tab="settings",
        status=422,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def multiplier_event_delete(request, event_id: int):
    event = selectors.get_multiplier_event(request.tenant, event_id)
    program_services.multiplier_event_delete(event=event, actor=request.user)
    messages.success(request, f"Removed {event.name}.")
    return redirect("program_settings")


def _create_page(request, form, create, *, template: str, tab: str, done: str):
    """A settings page listing things with a form that adds one through `create(**data)`."""
    if request.method == "POST" and form.is_valid():
        try:
            created = create(tenant=request.tenant, actor=request.user, **form.cleaned_data)
        except ProblemError as error:
            _problem_to_form(form, error)
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, f"Added {created.name}.")
            return redirect(done)
    return _settings_page(
        request, template, form=form, program_tab=tab, status=422 if form.errors else 200
    )


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def tiers(request):
    ladder = program_services.tier_ladder_get(request.tenant)
    return _create_page(
        request,
        forms.TierForm(request.POST or None, ladder=ladder),
        program_services.tier_create,
        template="programs/tiers.html",
        tab="tiers",
        done="program_tiers",
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def tier_delete(request, tier_id: int):
    tier = selectors.get_tier(request.tenant, tier_id)
    program_services.tier_delete(tier=tier, actor=request.user)
    messages.success(request, f"Removed the {tier.name} tier.")
    return redirect("program_tiers")


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def rewards(request):
    return _create_page(
        request,
        forms.RewardForm(request.POST or None),
        program_services.reward_create,
        template="programs/rewards.html",
        tab="rewards",
        done="program_rewards",
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def reward_toggle(request, reward_id: int):
    reward = selectors.get_reward(request.tenant, reward_id)
    reward = program_services.reward_update(
        reward=reward, actor=request.user, active=not reward.active
    )
    state = "offered again" if reward.active else "retired: it can't be redeemed any more"
    messages.success(request, f"{reward.name} is {state}.")
    return redirect(reverse("program_rewards"))
