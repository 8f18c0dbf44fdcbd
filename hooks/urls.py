"""Routes of the hooks app: dashboard pages and public endpoints."""

from django.urls import path

from hooks import views

dashboard_urlpatterns: list = [
    path("settings/webhooks/", views.webhooks, name="settings_webhooks"),
    path("settings/webhooks/<int:endpoint_id>/", views.webhook_endpoint, name="webhook_endpoint"),
    path(
        "settings/webhooks/<int:endpoint_id>/toggle/",
        views.webhook_endpoint_toggle,
        name="webhook_endpoint_toggle",
    ),
    path(
        "settings/webhooks/<int:endpoint_id>/delete/",
        views.webhook_endpoint_delete,
        name="webhook_endpoint_delete",
    ),
    path(
        "settings/webhooks/<int:endpoint_id>/roll-secret/",
        views.webhook_secret_roll,
        name="webhook_secret_roll",
    ),
    path(
        "settings/webhooks/<int:endpoint_id>/test/",
        views.webhook_test_send,
        name="webhook_test_send",
    ),
    path(
        "settings/webhooks/deliveries/<int:delivery_id>/replay/",
        views.webhook_delivery_replay,
        name="webhook_delivery_replay",
    ),
    path(
        "settings/webhooks/deliveries/<int:delivery_id>/retry/",
        views.webhook_delivery_retry,
        name="webhook_delivery_retry",
    ),
]
public_urlpatterns: list = []
