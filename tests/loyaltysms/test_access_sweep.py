"""Every dashboard route, enumerated from the URL conf: signed out it sends you to sign in;
a POST without the CSRF token is refused; a viewer can change nothing; and no page answers a
signed-in teammate of any role with a server error. A new route is covered the moment it is
added (routes that take an id get theirs from the isolation sweep's table)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from loyaltysms.models import AuditEvent, Role

from ..conftest import add_member, signed_in
from .test_isolation import GET_ONLY, all_patterns, other_tenant_ids

# Routes that aren't dashboard pages: the API (keys, tested in the API tests), the carrier's
# and Shopify's webhooks (signatures), the storefront widget (its publishable key), public
# links and documents, Django's admin.
NOT_DASHBOARD_PREFIXES = ("api/", "webhooks/", "widget/", "l/", "healthz", "admin/")
# Dashboard routes anyone may reach signed out.
PUBLIC = {"login", "logout", "signup", "invitation_accept"}
# Routes whose path argument isn't an object id.
NOT_ID_ARGS = {"export_start": {"kind": "members"}}
# What a viewer may POST: signing out, choosing a brand, making a brand of their own.
VIEWER_MAY_POST = {"logout", "switch_tenant", "brand_new"}
# POSTs that only draw a preview of a form being edited (htmx), changing nothing.
PREVIEWS = {"segment_builder", "segment_preview", "campaign_preview"}


def dashboard_routes(brand) -> dict[str, str]:
    """Every dashboard route's name and a URL of it (ids: objects of `brand`)."""
    ids = other_tenant_ids(brand)
    routes = {}
    for route, pattern in all_patterns():
        if route.startswith(NOT_DASHBOARD_PREFIXES) or pattern.name in PUBLIC:
            continue
        kwargs = ids.get(pattern.name) or NOT_ID_ARGS.get(pattern.name, {})
        routes[pattern.name] = reverse(pattern.name, kwargs=kwargs)
    return routes


def test_the_sweep_sees_the_whole_dashboard(alice_brand):
    routes = dashboard_routes(alice_brand)
    assert len(routes) >= 65
    assert {"home", "setup_starter_program", "flow_dry_run_start", "campaign_cancel"} <= set(routes)


def test_signed_out_every_page_sends_you_to_sign_in(alice_brand):
    client = Client()
    for name, url in dashboard_routes(alice_brand).items():
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code == 405:
                continue  # a method the route doesn't have: refused before anything else
            assert response.status_code == 302, (name, method, response.status_code)
            assert response["Location"].startswith(reverse("login")), name


def test_every_post_needs_the_csrf_token(alice_brand):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice_brand.owner)
    routes = dashboard_routes(alice_brand)
    audit_before = AuditEvent.objects.unscoped().count()
    for name, url in routes.items():
        response = client.post(url, {"name": "x", "status": "live", "body": "x"})
        assert response.status_code in {403, 405}, (name, response.status_code)
    assert AuditEvent.objects.unscoped().count() == audit_before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MARKETER, Role.ADMIN, Role.OWNER])
def test_every_page_answers_every_role_without_a_server_error(alice_brand, role):
    user = (
        alice_brand.owner
        if role == Role.OWNER
        else add_member(alice_brand.tenant, f"{role}@bakery.test", role)
    )
    client = signed_in(user)
    for name, url in dashboard_routes(alice_brand).items():
        if name in {"logout"}:
            continue
        response = client.get(url)
        assert response.status_code in {200, 302, 403, 405}, (name, role, response.status_code)
        if role == Role.VIEWER and name in {"settings_activity"}:
            assert response.status_code == 403


def test_a_viewer_changes_nothing_anywhere(alice_brand, vera):
    client = signed_in(vera)
    routes = dashboard_routes(alice_brand)
    audit_before = AuditEvent.objects.unscoped().count()
    for name, url in routes.items():
        if name in VIEWER_MAY_POST | PREVIEWS:
            continue
        response = client.post(url, {"name": "x", "status": "live", "body": "x", "points": "5"})
        expected = {405} if name in GET_ONLY else {403, 405}
        assert response.status_code in expected, (name, response.status_code)
    assert AuditEvent.objects.unscoped().count() == audit_before


# What can't be undone asks first: in the browser before the POST, or on a page of its own.
CONFIRM_IN_PLACE = {
    "api_key_revoke",
    "member_remove",
    "invitation_revoke",
    "multiplier_event_delete",
    "tier_delete",
}
# name → how the confirmation page is reached (a POST without confirm=yes asks first). A
# campaign's cancel page is for a campaign under way: tests/automations/test_campaign_pages.py.
CONFIRM_PAGES = {
    "segment_delete": "get",
    "flow_delete": "get",
    "subscriber_unsubscribe": "post",
}


def test_destructive_actions_ask_for_confirmation_first(alice_brand):
    templates = "".join(
        path.read_text() for path in (Path(settings.BASE_DIR) / "templates").rglob("*.html")
    )
    forms = re.findall(r"<form[^>]*action=\"\{% url '\w+'[^>]*>", templates)
    posted = {re.search(r"url '(\w+)'", form).group(1): form for form in forms}
    for name in CONFIRM_IN_PLACE:
        assert "return confirm(" in posted[name], name
    client = signed_in(alice_brand.owner)
    routes = dashboard_routes(alice_brand)
    for name, method in CONFIRM_PAGES.items():
        page = getattr(client, method)(routes[name])
        assert page.status_code == 200, name
        assert re.search(r'<button type="submit" class="danger">Yes, ', page.content.decode()), name
