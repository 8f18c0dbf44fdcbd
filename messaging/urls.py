from django.urls import path, re_path

from messaging import apis, links, views, webhooks

api_urlpatterns = [
    path("subscribers", apis.SubscribersApi.as_view(), name="api_subscribers"),
    re_path(
        r"^subscribers/(?P<phone>[^/]+)$",
        apis.SubscriberDetailApi.as_view(),
        name="api_subscriber",
    ),
    path("messages/preview", apis.PreviewApi.as_view(), name="api_message_preview"),
]

public_urlpatterns = [
    path("webhooks/twilio/inbound", webhooks.inbound, name="twilio_inbound"),
    path("webhooks/twilio/status", webhooks.status, name="twilio_status"),
    path("l/<str:code>", links.follow, name="short_link"),
]

dashboard_urlpatterns: list = [
    path("sms/subscribers/", views.subscribers, name="subscribers"),
    path("sms/subscribers/import/", views.subscribers_import, name="subscribers_import"),
    path(
        "sms/subscribers/imports/<int:import_id>/",
        views.subscribers_import_detail,
        name="subscribers_import_detail",
    ),
    path(
        "sms/subscribers/<int:subscriber_id>/",
        views.subscriber_detail,
        name="subscriber_detail",
    ),
    path(
        "sms/subscribers/<int:subscriber_id>/consent.csv",
        views.subscriber_consent_export,
        name="subscriber_consent_export",
    ),
    path(
        "sms/subscribers/<int:subscriber_id>/unsubscribe/",
        views.subscriber_unsubscribe,
        name="subscriber_unsubscribe",
    ),
    path("sms/inbox/", views.inbox, name="inbox"),
    path("sms/inbox/<int:subscriber_id>/", views.inbox_conversation, name="inbox_conversation"),
    path("sms/inbox/<int:subscriber_id>/reply/", views.inbox_reply, name="inbox_reply"),
    path("sms/inbox/<int:subscriber_id>/resolve/", views.inbox_resolve, name="inbox_resolve"),
    path("sms/settings/", views.sms_settings, name="sms_settings"),
    path("sms/settings/senders/twilio/", views.sms_sender_connect, name="sms_sender_connect"),
    path("sms/settings/senders/sandbox/", views.sms_sender_sandbox, name="sms_sender_sandbox"),
    path("sms/simulator/", views.sms_simulator, name="sms_simulator"),
    path("settings/usage/", views.settings_usage, name="settings_usage"),
]
