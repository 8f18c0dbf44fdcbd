import json

import pytest

from ..conftest import api_client


class Api:
    """A storefront talking JSON to the API with one brand's key."""

    def __init__(self, key: str):
        self.client = api_client(key)

    def _send(self, method, path, body=None, **headers):
        kwargs = {"headers": headers} if headers else {}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return getattr(self.client, method)(f"/api/v1/{path}", **kwargs)

    def get(self, path, **headers):
        return self._send("get", path, **headers)

    def post(self, path, body=None, **headers):
        return self._send("post", path, body if body is not None else {}, **headers)

    def patch(self, path, body, **headers):
        return self._send("patch", path, body, **headers)

    def delete(self, path, **headers):
        return self._send("delete", path, **headers)


@pytest.fixture
def alice_api(alice_brand) -> Api:
    return Api(alice_brand.api_key)


@pytest.fixture
def charlie_api(charlie_brand) -> Api:
    return Api(charlie_brand.api_key)


def assert_problem(response, status: int, *fields: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    for field in fields:
        assert field in body["errors"], body
    return body
