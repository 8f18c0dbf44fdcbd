"""The dashboard shell: sign-in, brand switcher, home, and settings (API keys, team, activity)."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from loyaltysms import dashboard, exports, forms, selectors, services
from loyaltysms.models import ExportStatus, Role, User
from loyaltysms.tasks import export_csv
from loyaltysms.tenancy.middleware import SESSION_TENANT_KEY
from loyaltysms.tenancy.tasks import enqueue_on_commit
from programs.services.program import program_get, program_starter_apply

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def tenant_view(*, read: str = Role.VIEWER, write: str = Role.MARKETER):
    """A dashboard page of the current brand: signed in, a member, and the role the method needs.

    Viewers only ever read: every non-safe method needs at least `write` (marketer by default).
    """

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.membership is None:
                return render(request, "loyaltysms/no_tenant.html", status=403)
            least = read if request.method in SAFE_METHODS else write
            if not request.membership.allows(least):
                raise PermissionDenied(f"This needs the {Role(least).label} role or higher.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def render_in_brand_zone(request, template: str, context: dict, status: int = 200):
    """A page whose times show in the brand's zone (as marketers read and type them)."""
    with timezone.override(ZoneInfo(request.tenant.timezone)):
        return render(request, template, context, status=status)


def _form_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)


@require_GET
@login_required
def home(request):
    if request.membership is None:
        # Signed up but no brand yet (or removed from every brand): make one, if one may.
        if django_settings.SIGNUP_OPEN or request.user.is_staff:
            return redirect("brand_new")
        return render(request, "loyaltysms/no_tenant.html", status=403)
    return _home(request)


@tenant_view()
def _home(request):
    tenant = request.tenant
    now = timezone.now()
    month = dashboard.month_numbers(tenant, now)
    return render_in_brand_zone(
        request,
        "loyaltysms/home.html",
        {
            # Put away: not worked out at all (no query) until shown again.
            "checklist": None if tenant.setup_hidden_at else dashboard.setup_checklist(tenant),
            "month": month,
            "cards": month.cards(program_get(tenant).currency),
            "attention": dashboard.attention(tenant, failed=month.figures.failed, now=now),
        },
    )


@require_http_methods(["GET", "POST"])
def signup(request):
    """A new account: email and password, then straight on to making a brand."""
    if request.user.is_authenticated:
        return redirect("brand_new")
    if not django_settings.SIGNUP_OPEN:
        return render(request, "loyaltysms/signup_closed.html", status=403)
    form = forms.SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    email=form.cleaned_data["email"], password=form.cleaned_data["password"]
                )
        except IntegrityError:  # the same email a moment ago (a double click)
            form.add_error("email", forms.SignUpForm.TAKEN)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("brand_new")
    return render(
        request, "loyaltysms/signup.html", {"form": form}, status=422 if form.errors else 200
    )


@require_http_methods(["GET", "POST"])
@login_required
def brand_new(request):
    """A brand of the signed-in user's own, who becomes its owner; home shows what's next.
    With sign-up closed, only staff make brands (or `manage.py create_tenant`)."""
    if not (django_settings.SIGNUP_OPEN or request.user.is_staff):
        return render(request, "loyaltysms/signup_closed.html", status=403)
    form = forms.BrandForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = services.tenant_create_for(
                user=request.user,
                name=data["name"],
                timezone_name=data["timezone"],
                currency=data["currency"],
                default_country=data["default_country"],
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            request.session[SESSION_TENANT_KEY] = created.tenant.pk
            messages.success(
                request,
                f"{created.tenant.name} is ready. The checklist below takes you through setup.",
            )
            return redirect("home")
    return render(
        request, "loyaltysms/brand_new.html", {"form": form}, status=422 if form.errors else 200
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def setup_checklist_toggle(request):
    """Put the home page's setup checklist away, or bring it back."""
    tenant = request.tenant
    hide = request.POST.get("hide") == "1"
    services.tenant_setup_hide(tenant=tenant, hide=hide, actor=request.user)
    return redirect("home")


@require_POST
@tenant_view(write=Role.ADMIN)
def setup_starter_program(request):
    """The starter tiers and rewards, from the home page's checklist."""
    starter = program_starter_apply(tenant=request.tenant, actor=request.user)
    if starter.tiers or starter.rewards:
        messages.success(
            request,
            f"Added {starter.tiers} tiers and {starter.rewards} rewards. Change them any time "
            "under Program.",
        )
    else:
        messages.info(request, "You have tiers and rewards already: nothing was added.")
    return redirect("home")


@require_POST
@tenant_view()
def export_start(request, kind: str):
    """Export a list page with its filters (the form carries them): the export's own page
    shows the worker's progress, then the download."""
    if kind not in exports.KINDS:
        raise Http404("No such export.")
    job = exports.export_create(
        tenant=request.tenant, kind=kind, filters=request.POST.dict(), user=request.user
    )
    enqueue_on_commit(export_csv, request.tenant.pk, job.pk)
    return redirect("export_detail", export_id=job.pk)


@require_GET
@tenant_view()
def export_detail(request, export_id: int):
    job = selectors.get_export(request.tenant, export_id)
    context = {"job": job, "kind": exports.KINDS[job.kind], "kept_days": exports.EXPORT_KEPT_DAYS}
    if request.headers.get("HX-Request") == "true":  # htmx polling for progress
        return render(request, "loyaltysms/_export_progress.html", context)
    return render_in_brand_zone(request, "loyaltysms/export_detail.html", context)


@require_GET
@tenant_view()
def export_download(request, export_id: int):
    job = selectors.get_export(request.tenant, export_id)
    if job.status != ExportStatus.DONE:
        return redirect("export_detail", export_id=job.pk)
    response = StreamingHttpResponse(exports.export_chunks(job), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{exports.export_filename(job)}"'
    response["Content-Length"] = str(job.size)
    response["Cache-Control"] = "private, no-store"  # personal data: no copies on the way
    return response


@require_POST
@login_required
def switch_tenant(request):
    try:
        tenant_id = int(request.POST.get("tenant_id", ""))
    except ValueError:
        tenant_id = None
    membership = (
        selectors.membership_for(user=request.user, tenant_id=tenant_id) if tenant_id else None
    )
    if membership is None:
        # Same answer for "no such brand" and "not yours".
        messages.error(request, "You are not a member of that brand.")
    else:
        request.session[SESSION_TENANT_KEY] = membership.tenant_id
        messages.success(request, f"Switched to {membership.tenant.name}.")
    return redirect("home")


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def api_keys(request):
    new_key = None
    form = forms.ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        new_key = services.api_key_create(
            tenant=request.tenant, name=form.cleaned_data["name"], created_by=request.user
        )
        form = forms.ApiKeyForm()
    return render(
        request,
        "loyaltysms/settings_api_keys.html",
        {
            "form": form,
            "new_key": new_key,
            "api_keys": selectors.api_key_list(request.tenant),
            "settings_tab": "api_keys",
        },
        status=201 if new_key else 200,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def api_key_revoke(request, api_key_id: int):
    api_key = selectors.get_api_key(request.tenant, api_key_id)
    services.api_key_revoke(api_key=api_key, revoked_by=request.user)
    messages.success(request, f"Revoked {api_key.name} ({api_key.prefix}…). It stops working now.")
    return redirect("settings_api_keys")


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def team(request):
    form = forms.InviteForm(request.POST or None, inviter=request.membership)
    invite_link = None
    if request.method == "POST" and form.is_valid():
        try:
            new = services.invitation_create(
                tenant=request.tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
                site_url=request.build_absolute_uri("/"),
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            invite_link = new.link
            messages.success(request, f"Invitation sent to {new.invitation.email}.")
            form = forms.InviteForm(inviter=request.membership)
    return render(
        request,
        "loyaltysms/settings_team.html",
        {
            "form": form,
            "invite_link": invite_link,
            "members": selectors.team_list(request.tenant),
            "invitations": selectors.invitation_list_open(request.tenant),
            "roles": Role.choices,
            "settings_tab": "team",
        },
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def member_role(request, membership_id: int):
    membership = selectors.get_membership(request.tenant, membership_id)
    role = request.POST.get("role", "")
    if role not in Role.values:
        messages.error(request, "Choose one of the roles in the list.")
        return redirect("settings_team")
    try:
        services.membership_change_role(membership=membership, role=role, changed_by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"{membership.user.email} is now {Role(role).label}.")
    return redirect("settings_team")


@require_POST
@tenant_view(write=Role.ADMIN)
def member_remove(request, membership_id: int):
    membership = selectors.get_membership(request.tenant, membership_id)
    try:
        services.membership_remove(membership=membership, removed_by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Removed {membership.user.email} from {request.tenant.name}.")
    return redirect("settings_team")


@require_POST
@tenant_view(write=Role.ADMIN)
def invitation_revoke(request, invitation_id: int):
    invitation = selectors.get_invitation(request.tenant, invitation_id)
    services.invitation_revoke(invitation=invitation, revoked_by=request.user)
    messages.success(request, f"Invitation for {invitation.email} withdrawn.")
    return redirect("settings_team")


@require_GET
@tenant_view(read=Role.ADMIN)
def activity(request):
    return render(
        request,
        "loyaltysms/settings_activity.html",
        {"events": selectors.audit_list(request.tenant, limit=200), "settings_tab": "activity"},
    )


@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str) -> HttpResponse:
    """Join a brand from an invitation link, creating the account when the person is new."""
    invitation = selectors.invitation_by_token(token)
    valid = (
        invitation is not None
        and invitation.accepted_at is None
        and invitation.revoked_at is None
        and invitation.expires_at > timezone.now()
    )
    if not valid:
        return render(request, "loyaltysms/invitation_invalid.html", status=404)
    existing = User.objects.filter(email__iexact=invitation.email).first()
    signed_in_as_other = (
        request.user.is_authenticated and request.user.email.lower() != invitation.email.lower()
    )
    password_form = None
    if existing is None and not request.user.is_authenticated:
        password_form = SetPasswordForm(User(email=invitation.email), request.POST or None)
    if request.method == "POST" and not signed_in_as_other:
        user = request.user if request.user.is_authenticated else None
        if user is None and existing is not None:
            return redirect(f"{reverse('login')}?next={request.path}")
        if user is None and password_form.is_valid():
            user = User.objects.create_user(
                email=invitation.email, password=password_form.cleaned_data["new_password1"]
            )
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if user is not None:
            try:
                membership = services.invitation_accept(invitation=invitation, user=user)
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
                return redirect("home")
            request.session[SESSION_TENANT_KEY] = membership.tenant_id
            messages.success(request, f"Welcome to {membership.tenant.name}.")
            return redirect("home")
    return render(
        request,
        "loyaltysms/invitation_accept.html",
        {
            "invitation": invitation,
            "password_form": password_form,
            "needs_login": existing is not None and not request.user.is_authenticated,
            "signed_in_as_other": signed_in_as_other,
        },
    )


def keyset_page(request, rows: list, size: int) -> tuple[list, str | None]:
    """A page of `size` rows from `rows` (fetched with one extra, newest first) and the link
    to the next page: this page's query string with ?after=<the last row's id>."""
    if len(rows) <= size:
        return rows, None
    page = rows[:size]
    params = request.GET.copy()
    params["after"] = page[-1].pk
    return page, f"?{params.urlencode()}"
