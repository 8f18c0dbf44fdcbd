"""Dashboard pages of segments: the list with live counts, the builder (new and edit) with a
live count and sample of who matches, the raw JSON editor, and delete with a confirmation.

The builder is one form (segments/forms.py). With htmx, its buttons and field/operator
selects post it to `segment_builder`, which draws the rows again, and every edit posts it
(debounced) to `segment_preview`, which answers with the count, a sample and each row's
problems. Without JavaScript the same buttons post the page itself.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from loyaltysms.models import Role
from loyaltysms.problems import ProblemError
from loyaltysms.views import tenant_view
from programs.services.program import program_get, tier_ladder_get
from segments import forms, selectors, services
from segments.models import Segment
from segments.rules import RulesInvalid, conditions

SAMPLE_SIZE = 10


def _brand_choices(tenant) -> forms.BrandChoices:
    program = program_get(tenant)
    return forms.BrandChoices(
        tiers=[(tier.pk, tier.name) for tier in tier_ladder_get(tenant)],
        currency=program.currency,
        points_name=program.points_name,
    )


def _builder_context(request, builder: forms.Builder) -> dict:
    builder.decorate(_brand_choices(request.tenant))
    return {
        "builder": builder,
        "field_choices": forms.field_choices(),
        "group_kinds": forms.GROUP_LABELS,
        "zones": sorted(forms.zones()) if builder.uses_zones else [],
        "builder_url": reverse("segment_builder"),
        "preview_url": reverse("segment_preview"),
    }


# --- the list -------------------------------------------------------------------------------
@require_GET
@tenant_view()
def segments(request):
    """Saved segments by name; each row's count is fetched by itself (segment_count) as it
    scrolls into view, so the page costs the same few queries however many there are."""
    rows = [
        {"segment": segment, "conditions": len(conditions(segment.rules))}
        for segment in selectors.segment_list(request.tenant)
    ]
    return render(request, "segments/list.html", {"rows": rows, "segments_tab": True})


@require_GET
@tenant_view()
def segment_count(request, segment_id: int):
    """How many people a saved segment holds now (a fragment of the list)."""
    segment = selectors.get_segment(request.tenant, segment_id)
    try:
        count = selectors.segment_count(request.tenant, segment.rules)
    except RulesInvalid:  # e.g. a tier it names was removed since it was saved
        return render(request, "segments/_count.html", {"segment": segment, "invalid": True})
    return render(request, "segments/_count.html", {"count_display": f"{count:,}"})


# --- the builder ----------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def segment_new(request):
    return _builder_page(request, None)


@require_http_methods(["GET", "POST"])
@tenant_view()
def segment_edit(request, segment_id: int):
    """Viewers see it (and may try changes); saving needs a marketer."""
    segment = selectors.get_segment(request.tenant, segment_id)
    return _builder_page(request, segment)


def _builder_page(request, segment: Segment | None):
    tenant = request.tenant
    initial = {"name": segment.name} if segment else None
    json_errors: list[str] = []
    preview = None
    status = 200
    if request.method == "GET":
        builder = forms.Builder.from_tree(segment.rules if segment else forms.EMPTY_TREE)
        name_form = forms.SegmentNameForm(initial=initial)
    elif "rules_json" in request.POST:
        # The advanced editor's own form (posted without JavaScript): it holds no name.
        name_form = forms.SegmentNameForm(initial=initial)
        builder, json_errors = forms.builder_from_json(request.POST["rules_json"])
        if builder is None:
            builder = forms.Builder.from_tree(segment.rules if segment else forms.EMPTY_TREE)
            status = 422
    else:
        name_form = forms.SegmentNameForm(request.POST)
        builder = forms.Builder.from_post(request.POST)
        action = request.POST.get("action", "")
        if action == "save":
            saved = _save(request, segment, builder, name_form)
            if saved is not None:
                verb = "Created" if segment is None else "Saved"
                messages.success(request, f"{verb} the segment {saved.name}.")
                return redirect("segments")
            status = 422
        else:
            builder.apply(action)
            if action == "count":
                preview = _preview(tenant, builder)
    context = _builder_context(request, builder)
    context.update(
        segment=segment,
        name_form=name_form,
        preview=preview,
        json_errors=json_errors,
        rules_json=builder.json(),
        segments_tab=True,
    )
    return render(request, "segments/builder.html", context, status=status)


def _save(request, segment: Segment | None, builder: forms.Builder, name_form) -> Segment | None:
    """Save the builder's tree and name; every problem (name and rows) is shown at once."""
    tree = builder.tree()
    ok = name_form.is_valid()
    if builder.flag_blank():
        ok = False
    try:
        selectors.rules_checked(request.tenant, tree)
    except RulesInvalid as error:
        builder.attach(error.problems)
        ok = False
    if not ok:
        return None
    name, now = name_form.cleaned_data["name"], timezone.now()
    try:
        if segment is None:
            return services.segment_create(
                tenant=request.tenant, name=name, rules=tree, now=now, actor=request.user
            )
        return services.segment_update(
            segment=segment,
            name=name if name != segment.name else None,
            rules=tree if tree != segment.rules else None,
            now=now,
            actor=request.user,
        )
    except RulesInvalid as error:
        builder.attach(error.problems)
    except ProblemError as error:
        name_form.add_error("name" if "name" in (error.errors or {}) else None, error.detail)
    return None


def _preview(tenant, builder: forms.Builder) -> dict:
    """The count and a sample, or the rows' problems: one count query, then one sample query
    (none when no one matches)."""
    tree = builder.tree()
    now = timezone.now()
    try:
        count = selectors.segment_count(tenant, tree, now=now)
        sample = selectors.segment_sample(tenant, tree, SAMPLE_SIZE, now=now) if count else []
    except RulesInvalid as error:
        builder.attach(error.problems)
        return {"invalid": True}
    more = count - len(sample)
    return {
        "count": count,
        "count_display": f"{count:,}",
        "sample": sample,
        "more": more,
        "more_display": f"{more:,}",
    }


# Both answer htmx with fragments and write nothing, so viewers may use them too (the POST is
# for the size of a builder's form, which a URL might not hold).
@require_POST
@tenant_view(write=Role.VIEWER)
def segment_builder(request):
    """The builder's rows drawn again after a button or a field/operator change, or from the
    advanced editor's JSON (whose problems go to the editor instead)."""
    if "rules_json" in request.POST:
        builder, json_errors = forms.builder_from_json(request.POST["rules_json"])
        if builder is None:
            response = render(request, "segments/_json_errors.html", {"json_errors": json_errors})
            response["HX-Retarget"] = "#json-errors"
            response["HX-Reswap"] = "innerHTML"
            return response
    else:
        builder = forms.Builder.from_post(request.POST)
        builder.apply(request.POST.get("action", ""))
    response = render(request, "segments/_builder.html", _builder_context(request, builder))
    response["HX-Trigger-After-Settle"] = "refresh-preview"
    return response


@require_POST
@tenant_view(write=Role.VIEWER)
def segment_preview(request) -> HttpResponse:
    """Who matches the builder's rules now; each row's problems are swapped in beside it."""
    builder = forms.Builder.from_post(request.POST)
    preview = _preview(request.tenant, builder)
    return render(
        request,
        "segments/_preview.html",
        {"preview": preview, "builder": builder, "rules_json": builder.json(), "oob": True},
    )


# --- delete ---------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER)
def segment_delete(request, segment_id: int):
    """A confirmation page; deleting needs its button (confirm=yes)."""
    segment = selectors.get_segment(request.tenant, segment_id)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            services.segment_delete(segment=segment, actor=request.user)
        except services.SegmentInUse as error:
            messages.error(request, error.detail)
            return redirect("segment_edit", segment.pk)
        messages.success(request, f"Deleted the segment {segment.name}.")
        return redirect("segments")
    return render(request, "segments/delete.html", {"segment": segment, "segments_tab": True})
