"""Routes of the shopify app: dashboard pages and public endpoints."""

dashboard_urlpatterns: list = []
public_urlpatterns: list = []
