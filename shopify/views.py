"""Settings → Shopify: connect a store, see the webhook URL and the recent deliveries."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from loyaltysms.models import Role
from loyaltysms.views import _form_errors, tenant_view
from shopify import selectors, services
from shopify.forms import ConnectForm


def webhook_url(request) -> str:
    """What to paste into Shopify: our public address when set (behind a proxy)."""
    path = reverse("shopify_webhook")
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    return request.build_absolute_uri(path)


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def settings_shopify(request):
    tenant = request.tenant
    connection = selectors.connection_get(tenant)
    form = ConnectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            connection = services.connection_save(
                tenant=tenant,
                shop_domain=form.cleaned_data["shop_domain"],
                secret=form.cleaned_data["secret"],
                actor=request.user,
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, f"Connected {connection.shop_domain}.")
            return redirect("settings_shopify")
    return render(
        request,
        "shopify/settings.html",
        {
            "form": form,
            "connection": connection,
            "webhook_url": webhook_url(request),
            "topics": services.TOPICS.items(),
            "deliveries": selectors.webhook_list_recent(tenant),
            "settings_tab": "shopify",
        },
        status=422 if form.errors else 200,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def settings_shopify_disconnect(request):
    connection = selectors.connection_get(request.tenant)
    if connection is not None:
        services.connection_disconnect(connection=connection, actor=request.user)
        messages.success(
            request, f"Disconnected {connection.shop_domain}: its webhooks are refused now."
        )
    return redirect("settings_shopify")
