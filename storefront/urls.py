"""Routes of the storefront widget: its settings page and its public endpoints."""

from django.urls import path

from storefront import apis, views

dashboard_urlpatterns = [
    path("settings/widget/", views.settings_widget, name="settings_widget"),
    path("settings/widget/secret/", views.settings_widget_secret, name="settings_widget_secret"),
]

# Called from stores' pages with the publishable key: no session (DRF views skip CSRF).
public_urlpatterns = [
    path("widget/v1/widget.js", views.widget_script, name="widget_script"),
    path("widget/v1/<str:key>/config", apis.WidgetConfigApi.as_view(), name="widget_config"),
    path(
        "widget/v1/<str:key>/subscribe",
        apis.WidgetSubscribeApi.as_view(),
        name="widget_subscribe",
    ),
    path("widget/v1/<str:key>/member", apis.WidgetMemberApi.as_view(), name="widget_member"),
    path("widget/v1/<str:key>/redeem", apis.WidgetRedeemApi.as_view(), name="widget_redeem"),
]
