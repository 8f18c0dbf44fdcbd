"""Routes of the shopify app: dashboard pages and public endpoints."""

from django.urls import path

from shopify import views, webhooks

dashboard_urlpatterns: list = [
    path("settings/shopify/", views.settings_shopify, name="settings_shopify"),
    path(
        "settings/shopify/disconnect/",
        views.settings_shopify_disconnect,
        name="settings_shopify_disconnect",
    ),
]
public_urlpatterns: list = [
    path("webhooks/shopify", webhooks.receive, name="shopify_webhook"),
]
