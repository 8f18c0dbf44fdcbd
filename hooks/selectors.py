"""Reads of the hooks app, each scoped to one brand: the same 404 for missing and not yours."""

from __future__ import annotations

from django.db.models import Count
from django.http import Http404

from hooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope


def endpoint_list(tenant: Tenant) -> list[WebhookEndpoint]:
    with tenant_scope(tenant):
        return list(WebhookEndpoint.objects.order_by("-active", "-created_at"))


def get_endpoint(tenant: Tenant, endpoint_id: int) -> WebhookEndpoint:
    with tenant_scope(tenant):
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).select_related("tenant").first()
    if endpoint is None:
        raise Http404("No such webhook endpoint")
    return endpoint


def get_delivery(tenant: Tenant, delivery_id: int) -> WebhookDelivery:
    with tenant_scope(tenant):
        delivery = (
            WebhookDelivery.objects.filter(pk=delivery_id)
            .select_related("tenant", "endpoint")
            .first()
        )
    if delivery is None:
        raise Http404("No such delivery")
    return delivery


def delivery_log(
    endpoint: WebhookEndpoint, *, status: str = "", after: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    """The endpoint's deliveries, newest first, from before id `after` (keyset pages)."""
    with tenant_scope(endpoint.tenant):
        rows = WebhookDelivery.objects.filter(endpoint=endpoint)
        if status in DeliveryStatus.values:
            rows = rows.filter(status=status)
        if after is not None:
            rows = rows.filter(pk__lt=after)
        return list(rows.order_by("-id")[:limit])


def delivery_counts(endpoint: WebhookEndpoint) -> dict[str, int]:
    """Pending and failed deliveries of the endpoint (the list's badges)."""
    with tenant_scope(endpoint.tenant):
        rows = WebhookDelivery.objects.filter(
            endpoint=endpoint, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED]
        )
        counts = dict.fromkeys([DeliveryStatus.PENDING, DeliveryStatus.FAILED], 0)
        counts.update(rows.values_list("status").annotate(n=Count("id")).order_by())
        return counts
