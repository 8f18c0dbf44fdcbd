import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from loyaltysms.models import ApiKey, Membership, Role, User
from loyaltysms.tenancy.context import tenant_scope

from ..conftest import api_client, signed_in

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_tenant_prints_the_json_of_api_md_and_the_key_authenticates():
    out = run_command(
        "create_tenant", "acme", "--name", "Acme Outfitters", "--owner", "Owner@Acme.test",
        "--password", "a-long-enough-password",
    )  # fmt: skip
    printed = json.loads(out)
    assert set(printed) == {"tenant", "api_key"}
    assert printed["tenant"] == "acme"
    response = api_client(printed["api_key"]).get("/api/v1/tenant")
    assert response.status_code == 200
    assert response.json() == {
        "slug": "acme",
        "name": "Acme Outfitters",
        "timezone": "America/New_York",
        "currency": "USD",
        "default_country": "US",
    }
    owner = User.objects.get(email="owner@acme.test")
    assert owner.check_password("a-long-enough-password")
    assert Membership.objects.get(user=owner).role == Role.OWNER


def test_create_tenant_refuses_a_taken_slug_and_a_bad_time_zone(alice_brand):
    with pytest.raises(CommandError, match="exists already"):
        run_command("create_tenant", "alices-bakery", "--name", "X", "--owner", "x@x.test")
    with pytest.raises(CommandError, match="time zone"):
        run_command(
            "create_tenant", "new", "--name", "X", "--owner", "x@x.test", "--timezone", "Mars/Base"
        )


def test_create_api_key_prints_a_working_key(alice_brand):
    key = run_command("create_api_key", "alices-bakery").strip()
    assert key.startswith("lsk_")
    assert api_client(key).get("/api/v1/tenant").json()["slug"] == "alices-bakery"
    with pytest.raises(CommandError, match="No brand"):
        run_command("create_api_key", "nope")


def test_keys_are_stored_hashed(alice_brand):
    with tenant_scope(alice_brand.tenant):
        stored = ApiKey.objects.get()
    assert alice_brand.api_key not in (stored.key_hash, stored.prefix)
    assert len(stored.key_hash) == 64


def test_revoked_key_gets_401_from_the_next_request(alice_brand):
    client = api_client(alice_brand.api_key)
    assert client.get("/api/v1/tenant").status_code == 200
    with tenant_scope(alice_brand.tenant):
        key = ApiKey.objects.get()
    dashboard = signed_in(alice_brand.owner)
    assert dashboard.post(reverse("api_key_revoke", args=[key.pk])).status_code == 302
    response = client.get("/api/v1/tenant")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Invalid or revoked API key"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer lsk_nope_nope",
        "Bearer not-a-key",
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
        "Bearer lsk__",
    ],
)
def test_missing_or_bad_keys_get_401_problem(alice_brand, header):
    headers = {"Authorization": header} if header else {}
    response = Client(headers=headers).get("/api/v1/tenant")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["title"] == "Not authenticated"
    assert {"type", "title", "status", "detail"} <= set(body)


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(alice_brand):
    prefix = alice_brand.api_key.split("_")[1]
    forged = f"lsk_{prefix}_{'A' * 43}"
    assert api_client(forged).get("/api/v1/tenant").status_code == 401


def test_unknown_api_route_is_a_problem_404(alice_brand):
    response = api_client(alice_brand.api_key).get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_wrong_method_is_a_problem_405(alice_brand):
    response = api_client(alice_brand.api_key).post("/api/v1/tenant", {}, "application/json")
    assert response.status_code == 405
    assert response.json()["title"] == "Method not allowed"


def test_openapi_schema_and_offline_docs_are_served(db):
    schema = Client().get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    assert "/api/v1/tenant" in schema.json()["paths"]
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200
    # Swagger UI comes from the sidecar package, served by us: it works offline.
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', docs.content.decode())
    assert sources and all(src.startswith("/static/drf_spectacular_sidecar/") for src in sources)


def test_openapi_declares_bearer_api_key_auth(db):
    schema = Client().get("/api/schema/", headers={"Accept": "application/json"}).json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A brand's API key: `Authorization: Bearer lsk_…`. Settings → API keys.",
    }
    assert schema["paths"]["/api/v1/tenant"]["get"]["security"] == [{"ApiKey": []}]
