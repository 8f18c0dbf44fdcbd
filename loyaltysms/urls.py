from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from automations.urls import dashboard_urlpatterns as automations_dashboard
from hooks.urls import dashboard_urlpatterns as hooks_dashboard
from loyaltysms import apis, errors, health, views
from messaging.urls import api_urlpatterns as messaging_api
from messaging.urls import dashboard_urlpatterns as messaging_dashboard
from messaging.urls import public_urlpatterns as messaging_public
from programs.urls import api_urlpatterns as programs_api
from programs.urls import dashboard_urlpatterns as programs_dashboard
from segments.urls import dashboard_urlpatterns as segments_dashboard
from shopify.urls import dashboard_urlpatterns as shopify_dashboard
from shopify.urls import public_urlpatterns as shopify_public
from storefront.urls import dashboard_urlpatterns as storefront_dashboard
from storefront.urls import public_urlpatterns as storefront_public

api_v1 = [
    path("tenant", apis.TenantDetailApi.as_view(), name="api_tenant"),
    *programs_api,
    *messaging_api,
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("brands/new/", views.brand_new, name="brand_new"),
    path("setup/starter-program/", views.setup_starter_program, name="setup_starter_program"),
    path("setup/checklist/", views.setup_checklist_toggle, name="setup_checklist_toggle"),
    path("switch-tenant/", views.switch_tenant, name="switch_tenant"),
    path("exports/<slug:kind>/new/", views.export_start, name="export_start"),
    path("exports/<int:export_id>/", views.export_detail, name="export_detail"),
    path("exports/<int:export_id>/download/", views.export_download, name="export_download"),
    path("settings/api-keys/", views.api_keys, name="settings_api_keys"),
    path("settings/api-keys/<int:api_key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/team/", views.team, name="settings_team"),
    path("settings/team/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("settings/team/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "settings/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("settings/activity/", views.activity, name="settings_activity"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
    *programs_dashboard,
    *messaging_dashboard,
    *segments_dashboard,
    *automations_dashboard,
    *storefront_dashboard,
    *shopify_dashboard,
    *hooks_dashboard,
    *messaging_public,
    *storefront_public,
    *shopify_public,
    path("healthz", health.healthz, name="healthz"),
    path("healthz/web", health.healthz_web, name="healthz_web"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="api_schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api_schema", permission_classes=[]),
        name="api_docs",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api_schema", permission_classes=[]),
        name="api_redoc",
    ),
    path("admin/", admin.site.urls),
]

handler404 = errors.not_found
handler500 = errors.server_error
