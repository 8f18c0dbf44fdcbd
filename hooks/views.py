"""Settings → Webhooks: endpoints, their secrets, their delivery logs. Everyone in the brand
reads; admins change."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from hooks import selectors
from hooks.forms import DeliveryFilterForm, EndpointForm
from hooks.models import DeliveryStatus, WebhookEndpoint
from hooks.services import endpoints as services
from hooks.tasks import hooks_deliver
from loyaltysms.models import Role
from loyaltysms.tenancy.tasks import enqueue_on_commit
from loyaltysms.views import _form_errors, keyset_page, render_in_brand_zone, tenant_view

LOG_PAGE = 50


def _form_data(form: EndpointForm) -> dict:
    data = form.cleaned_data
    return {"url": data["url"], "events": data["events"], "description": data["description"]}


def _secret_page(request, endpoint: WebhookEndpoint, secret: str, status: int):
    """The one page that shows a secret in full (after creating or rolling it)."""
    return render(
        request,
        "hooks/secret.html",
        {"endpoint": endpoint, "secret": secret, "settings_tab": "webhooks"},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def webhooks(request):
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.endpoint_create(
                tenant=request.tenant, actor=request.user, **_form_data(form)
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            return _secret_page(request, created.endpoint, created.secret, status=201)
    endpoints = selectors.endpoint_list(request.tenant)
    for endpoint in endpoints:
        endpoint.counts = selectors.delivery_counts(endpoint)
    return render_in_brand_zone(
        request,
        "hooks/webhooks.html",
        {"form": form, "endpoints": endpoints, "settings_tab": "webhooks"},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def webhook_endpoint(request, endpoint_id: int):
    """The endpoint: its settings (admins change them) and its delivery log."""
    endpoint = selectors.get_endpoint(request.tenant, endpoint_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "events": endpoint.events}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(endpoint=endpoint, actor=request.user, **_form_data(form))
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, "Saved. New attempts go to the new settings.")
            return redirect("webhook_endpoint", endpoint.pk)
    filters = DeliveryFilterForm(request.GET)
    status, after = "", None
    if filters.is_valid():
        status, after = filters.cleaned_data["status"], filters.cleaned_data["after"]
    rows = selectors.delivery_log(endpoint, status=status, after=after, limit=LOG_PAGE + 1)
    deliveries, next_page = keyset_page(request, rows, LOG_PAGE)
    return render_in_brand_zone(
        request,
        "hooks/endpoint.html",
        {
            "endpoint": endpoint,
            "form": form,
            "filters": filters,
            "status": status,
            "statuses": DeliveryStatus.choices,
            "deliveries": deliveries,
            "next_page": next_page,
            "first_page": after is not None,
            "settings_tab": "webhooks",
        },
        status=422 if form.errors else 200,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def webhook_endpoint_toggle(request, endpoint_id: int):
    endpoint = selectors.get_endpoint(request.tenant, endpoint_id)
    active = not endpoint.active
    canceled = services.endpoint_set_active(
        endpoint=endpoint, active=active, now=timezone.now(), actor=request.user
    )
    if active:
        messages.success(request, f"Enabled. {endpoint.url} is sent new events from now on.")
    else:
        messages.success(
            request, f"Disabled {endpoint.url}; {canceled} pending deliveries were canceled."
        )
    return redirect("webhook_endpoint", endpoint.pk)


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def webhook_endpoint_delete(request, endpoint_id: int):
    """A confirmation page; deleting needs its button (confirm=yes)."""
    endpoint = selectors.get_endpoint(request.tenant, endpoint_id)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        services.endpoint_delete(endpoint=endpoint, actor=request.user)
        messages.success(request, f"Deleted the endpoint {endpoint.url} and its delivery log.")
        return redirect("settings_webhooks")
    return render(request, "hooks/delete.html", {"endpoint": endpoint, "settings_tab": "webhooks"})


@require_POST
@tenant_view(write=Role.ADMIN)
def webhook_secret_roll(request, endpoint_id: int):
    endpoint = selectors.get_endpoint(request.tenant, endpoint_id)
    rolled = services.endpoint_secret_roll(endpoint=endpoint, actor=request.user)
    return _secret_page(request, rolled.endpoint, rolled.secret, status=200)


@require_POST
@tenant_view(write=Role.ADMIN)
def webhook_test_send(request, endpoint_id: int):
    endpoint = selectors.get_endpoint(request.tenant, endpoint_id)
    if not endpoint.active:
        messages.error(request, "Enable the endpoint first: a disabled endpoint is sent nothing.")
        return redirect("webhook_endpoint", endpoint.pk)
    services.endpoint_test_send(endpoint=endpoint, now=timezone.now(), actor=request.user)
    enqueue_on_commit(hooks_deliver, request.tenant.pk, endpoint.pk)
    messages.success(request, "A test event is on its way: its delivery is at the top below.")
    return redirect("webhook_endpoint", endpoint.pk)


@require_POST
@tenant_view(write=Role.ADMIN)
def webhook_delivery_replay(request, delivery_id: int):
    delivery = selectors.get_delivery(request.tenant, delivery_id)
    try:
        copy = services.delivery_replay(delivery=delivery, now=timezone.now(), actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        enqueue_on_commit(hooks_deliver, request.tenant.pk, delivery.endpoint_id)
        messages.success(request, f"Replaying delivery {delivery.pk} as delivery {copy.pk}.")
    return redirect("webhook_endpoint", delivery.endpoint_id)


@require_POST
@tenant_view(write=Role.ADMIN)
def webhook_delivery_retry(request, delivery_id: int):
    delivery = selectors.get_delivery(request.tenant, delivery_id)
    if services.delivery_retry_now(delivery=delivery, now=timezone.now(), actor=request.user):
        enqueue_on_commit(hooks_deliver, request.tenant.pk, delivery.endpoint_id)
        messages.success(
            request,
            f"Delivery {delivery.pk} is due now (after any older pending one of its member).",
        )
    else:
        messages.info(request, f"Delivery {delivery.pk} isn't pending any more.")
    return redirect("webhook_endpoint", delivery.endpoint_id)
