"""A NUL character in a query string is a 400, never a server error (PostgreSQL can't hold
one in a text value): found by the API fuzzer on the members search."""

import pytest

from ..conftest import api_client, signed_in


def test_a_nul_in_an_api_query_is_a_problem_400(alice_brand):
    response = api_client(alice_brand.api_key).get("/api/v1/members?q=%00abc")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "NUL" in response.json()["detail"]
    assert api_client(alice_brand.api_key).get("/api/v1/members?q=abc").status_code == 200


def test_a_nul_in_a_dashboard_query_is_a_400(alice_brand):
    client = signed_in(alice_brand.owner)
    assert client.get("/members/?q=a%00b").status_code == 400
    assert client.get("/members/?q=ab").status_code == 200


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 30, "-1", "1e3"])
def test_odd_numbers_in_query_strings_are_ignored_or_refused(alice_client, alice_brand, value):
    assert alice_client.get(f"/members/?tier={value}").status_code == 200
    assert alice_client.get(f"/sms/subscribers/?after={value}").status_code == 200
    api = api_client(alice_brand.api_key)
    assert api.get(f"/api/v1/members?limit={value}").status_code == 400
