"""Reads of the shopify app."""

from __future__ import annotations

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from shopify.models import ShopifyConnection, ShopifyWebhook

RECENT_DELIVERIES = 25


def connection_get(tenant: Tenant) -> ShopifyConnection | None:
    with tenant_scope(tenant):
        return ShopifyConnection.objects.first()


def connection_for_shop(shop_domain: str) -> ShopifyConnection | None:
    """The connection a webhook claims to be for, by its X-Shopify-Shop-Domain header; the
    caller must then check the signature with that connection's secret."""
    shop_domain = shop_domain.strip().lower()
    if not shop_domain or len(shop_domain) > 80:
        return None
    # WARNING: all tenants' connections; the shop's domain is how a webhook finds its brand.
    return (
        ShopifyConnection.objects.unscoped()
        .select_related("tenant")
        .filter(shop_domain=shop_domain)
        .first()
    )


def webhook_list_recent(tenant: Tenant, limit: int = RECENT_DELIVERIES) -> list[ShopifyWebhook]:
    with tenant_scope(tenant):
        return list(ShopifyWebhook.objects.order_by("-received_at", "-id")[:limit])
