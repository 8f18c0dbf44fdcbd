"""Dashboard pages of campaigns: the list, the composer (new and edit, with a live phone
preview for real recipients of the audience), the campaign's page (what it will do, or its
live progress and results), send/schedule and cancel behind a confirmation, and its CSV.

Times are shown and typed in the brand's zone. The composer posts itself (debounced) to
`campaign_preview`, which answers with the audience count and the texts three of its people
would get; without JavaScript, "Preview" posts the page itself.
"""

from __future__ import annotations

import contextlib
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from redis.exceptions import RedisError

from automations import selectors, stats
from automations.forms import CampaignForm
from automations.models import Campaign, CampaignStatus, SendMode
from automations.services import campaigns as services
from automations.services.launch import launch_moment
from loyaltysms.models import Role
from loyaltysms.problems import ProblemError
from loyaltysms.views import render_in_brand_zone, tenant_view
from messaging.services.outbound import BodyInvalid
from programs.services.program import program_get
from segments.selectors import segment_list

PAGE = 50
# The progress bar asks every few seconds; a campaign of a million takes seconds to count.
PROGRESS_CACHE_SECONDS = 3
PROGRESS_POLL = "every 3s"
# A sent campaign may still have texts waiting (quiet hours, caps, local times): those stop.
CANCELABLE = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.SENT)


def _zone(request) -> ZoneInfo:
    return ZoneInfo(request.tenant.timezone)


def _page(request, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render_in_brand_zone(request, template, {"campaigns_tab": True, **context}, status)


# --- the list -------------------------------------------------------------------------------
@require_GET
@tenant_view()
def campaigns(request):
    """Newest first, 50 a page (keyset: ?before=<id>); counters from the campaign rows."""
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        before = None
    rows = selectors.campaign_list(request.tenant, before_id=before, limit=PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return _page(
        request,
        "automations/campaigns.html",
        {
            "rows": [{"campaign": c, "moment": _moment(c)} for c in rows],
            "next_before": rows[-1].pk if more else None,
            "has_segments": bool(rows) or bool(segment_list(request.tenant)),
        },
    )


def _moment(campaign: Campaign):
    """When it goes (scheduled) or went (launched)."""
    if campaign.launched_at is not None:
        return campaign.launched_at
    if campaign.status == CampaignStatus.SCHEDULED and campaign.send_mode != SendMode.NOW:
        return launch_moment(campaign) if campaign.send_mode == SendMode.AT else None
    return None


# --- the composer ---------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def campaign_new(request):
    return _composer(request, None)


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def campaign_edit(request, campaign_id: int):
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        state = campaign.get_status_display().lower()
        messages.info(request, f"A {state} campaign can't be edited.")
        return redirect("campaign_detail", campaign.pk)
    return _composer(request, campaign)


def _form(request, data=None, initial=None) -> CampaignForm:
    return CampaignForm(
        data, initial=initial, segments=segment_list(request.tenant), now=timezone.now()
    )


def _composer(request, campaign: Campaign | None):
    tenant = request.tenant
    status = 200
    preview = None
    with timezone.override(_zone(request)):
        if request.method == "GET":
            initial = None
            if campaign is not None:
                initial = CampaignForm.initial_of(campaign, selectors.campaign_variants(campaign))
            form = _form(request, initial=initial)
        else:
            form = _form(request, request.POST)
            if form.is_valid():
                if request.POST.get("action") == "preview":
                    preview = _preview(tenant, form)
                else:
                    saved = _save(request, campaign, form)
                    if saved is not None:
                        messages.success(
                            request, f"Saved {saved.name}. Check it, then send or schedule it."
                        )
                        return redirect("campaign_detail", saved.pk)
                    status = 422
            else:
                status = 422
    return _page(
        request,
        "automations/campaign_compose.html",
        {
            "campaign": campaign,
            "form": form,
            "preview": preview,
            "zone": tenant.timezone,
            "currency": program_get(tenant).currency,
        },
        status=status,
    )


def _save(request, campaign: Campaign | None, form: CampaignForm) -> Campaign | None:
    fields = form.service_fields()
    variants = form.variants() if form.cleaned_data.get("ab_test") else []
    now = timezone.now()
    try:
        if campaign is None:
            return services.campaign_create(
                tenant=request.tenant, now=now, variants=variants, actor=request.user, **fields
            )
        return services.campaign_update(
            campaign=campaign, now=now, variants=variants, actor=request.user, **fields
        )
    except services.CampaignInvalid as error:
        form.add_service_errors(error.errors or {})
    except ProblemError as error:
        form.add_error(None, error.detail)
    return None


def _preview(tenant, form: CampaignForm) -> dict:
    """The composer's preview of what the form holds now."""
    data = form.cleaned_data
    if data.get("ab_test"):
        versions = [(v.label, v.body) for v in form.variants()]
    else:
        versions = [("", data.get("body") or "")]
    return _audience_preview(
        tenant,
        data.get("segment_ids") or [],
        data.get("exclude_segment_ids") or [],
        [(label, body) for label, body in versions if body.strip()],
    )


def _audience_preview(tenant, segment_ids, exclude_segment_ids, versions) -> dict:
    """The audience count and three recipients' texts (one per version), or what's wrong."""
    try:
        found = selectors.audience_preview(
            tenant,
            segment_ids=segment_ids,
            exclude_segment_ids=exclude_segment_ids,
            versions=versions,
            now=timezone.now(),
        )
    except BodyInvalid as error:
        return {"problem": str(error)}
    except selectors.CampaignUnavailable:
        return {"problem": "A chosen segment no longer exists; choose the segments again."}
    return {"audience": found}


@require_POST
@tenant_view(write=Role.VIEWER)
def campaign_preview(request):
    """The composer's live preview (a fragment); writes nothing. Incomplete forms still get
    whatever can be shown: the audience of the segments chosen so far."""
    with timezone.override(_zone(request)):
        form = _form(request, request.POST)
        form.is_valid()
    if not form.cleaned_data.get("segment_ids"):
        preview = {"problem": "Choose who to send to, and the count and sample appear here."}
    else:
        preview = _preview(request.tenant, form)
    return _page(
        request,
        "automations/_campaign_preview.html",
        {"preview": preview, "currency": program_get(request.tenant).currency},
    )


# --- the campaign's page --------------------------------------------------------------------
@require_GET
@tenant_view()
def campaign_detail(request, campaign_id: int):
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    variants = selectors.campaign_variants(campaign)
    context = {
        "campaign": campaign,
        "variants": variants,
        "segments": _segment_names(request.tenant, campaign),
        "moment": _moment(campaign),
        "currency": program_get(request.tenant).currency,
    }
    if campaign.status == CampaignStatus.DRAFT:
        context["preview"] = _draft_preview(request.tenant, campaign, variants)
    elif campaign.frozen_at is not None:
        context |= _results(request.tenant, campaign, variants)
    return _page(request, "automations/campaign_detail.html", context)


def _segment_names(tenant, campaign: Campaign) -> dict:
    names = {s.pk: s.name for s in segment_list(tenant)}

    def named(ids):
        return [names.get(i, f"deleted segment {i}") for i in ids]

    return {
        "include": named(campaign.segment_ids),
        "exclude": named(campaign.exclude_segment_ids),
    }


def _draft_preview(tenant, campaign: Campaign, variants) -> dict:
    versions = [(v.label, v.body) for v in variants] if campaign.ab_test else [("", campaign.body)]
    return _audience_preview(tenant, campaign.segment_ids, campaign.exclude_segment_ids, versions)


def _results(tenant, campaign: Campaign, variants) -> dict:
    figures = stats.campaign_stats(tenant, campaign)
    scores = []
    if campaign.ab_test:
        for variant in variants:
            scores.append(
                {
                    "variant": variant,
                    "score": campaign.winner_scores.get(str(variant.pk)),
                    "winner": variant.pk == campaign.winner_id,
                }
            )
    return {"stats": figures, "scores": scores, "progress": _progress(campaign)}


def _progress_key(campaign: Campaign) -> str:
    return f"campaign-progress:{campaign.tenant_id}:{campaign.pk}"


def _progress(campaign: Campaign) -> dict:
    """The progress bar's figures, cached a few seconds (every viewer polls); straight from
    PostgreSQL while the cache is unreachable."""
    key = _progress_key(campaign)
    try:
        found = cache.get(key)
    except RedisError:
        found = None
    if found is None:
        progress = selectors.campaign_progress(campaign)
        finished = progress.status in (CampaignStatus.SENT, CampaignStatus.CANCELED) and not (
            sum(progress.statuses.get(s, 0) for s in selectors.IN_PROGRESS)
        )
        waiting_winner = (
            campaign.ab_test
            and campaign.winner_id is None
            and progress.status == CampaignStatus.SENDING
        )
        found = {
            "status": progress.status,
            "audience": progress.audience,
            "created": progress.created,
            "pending": progress.pending,
            "settled": progress.settled,
            "holdout": progress.holdout,
            "skipped": progress.skipped,
            "statuses": sorted(progress.statuses.items()),
            "percent": round(progress.percent_done, 1),
            "finished": finished,
            "waiting_winner": waiting_winner,
        }
        with contextlib.suppress(RedisError):
            cache.set(key, found, PROGRESS_CACHE_SECONDS)
    return found


@require_GET
@tenant_view()
def campaign_progress(request, campaign_id: int):
    """The progress bar alone, polled while the campaign is under way."""
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    # oob: the heading's status tag is refreshed with the bar (scheduled → sending → sent).
    context = {"campaign": campaign, "poll": PROGRESS_POLL, "oob": True}
    if campaign.frozen_at is not None:
        context["progress"] = _progress(campaign)
    return _page(request, "automations/_campaign_progress.html", context)


@require_GET
@tenant_view()
def campaign_stats_csv(request, campaign_id: int):
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    response = HttpResponse(
        stats.campaign_stats_csv(request.tenant, campaign), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}.csv"'
    return response


# --- send / schedule, cancel ----------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def campaign_schedule(request, campaign_id: int):
    """A confirmation with the audience count; the campaign goes on its button."""
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        messages.info(request, f"It is {campaign.get_status_display().lower()} already.")
        return redirect("campaign_detail", campaign.pk)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            services.campaign_schedule(campaign=campaign, now=timezone.now(), actor=request.user)
        except ProblemError as error:
            messages.error(request, error.detail)
            return redirect("campaign_detail", campaign.pk)
        verb = "Sending" if campaign.send_mode == SendMode.NOW else "Scheduled"
        messages.success(request, f"{verb} {campaign.name}.")
        return redirect("campaign_detail", campaign.pk)
    variants = selectors.campaign_variants(campaign)
    return _page(
        request,
        "automations/campaign_schedule.html",
        {
            "campaign": campaign,
            "preview": _draft_preview(request.tenant, campaign, variants),
            "currency": program_get(request.tenant).currency,
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def campaign_cancel(request, campaign_id: int):
    """A confirmation; canceling stops every text not yet handed to the carrier."""
    campaign = selectors.get_campaign(request.tenant, campaign_id)
    if campaign.status not in CANCELABLE:
        messages.info(request, f"It is {campaign.get_status_display().lower()}: nothing to stop.")
        return redirect("campaign_detail", campaign.pk)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        canceled = services.campaign_cancel(
            campaign=campaign, now=timezone.now(), actor=request.user
        )
        with contextlib.suppress(RedisError):  # a stale bar for a few seconds at worst
            cache.delete(_progress_key(campaign))
        messages.success(
            request, f"Canceled {campaign.name}: {canceled:,} texts not yet sent were stopped."
        )
        return redirect("campaign_detail", campaign.pk)
    return _page(request, "automations/campaign_cancel.html", {"campaign": campaign})
