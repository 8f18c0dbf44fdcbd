from django.urls import path, re_path

from messaging import apis, links, webhooks

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

dashboard_urlpatterns: list = []
