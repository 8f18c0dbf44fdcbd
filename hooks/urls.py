"""Routes of the hooks app: dashboard pages and public endpoints."""

dashboard_urlpatterns: list = []
public_urlpatterns: list = []
