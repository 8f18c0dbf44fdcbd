"""Schemathesis drives every operation of the OpenAPI document with generated input, valid and
invalid: the API never answers 5xx, and every error is application/problem+json."""

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.openapi import from_wsgi

from loyaltysms.models import Tenant
from loyaltysms.wsgi import application

EXAMPLES_PER_OPERATION = 12


def errors_are_problems(ctx, response, case):
    if response.status_code >= 400:
        headers = {name.lower(): value for name, value in response.headers.items()}
        content_type = headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), (
            f"{case.method} {case.formatted_path}: {response.status_code} as {content_type!r}"
        )
        assert {"type", "title", "status", "detail"} <= response.json().keys()
    return None


@pytest.fixture
def in_process_wsgi():
    """Calls go straight to the WSGI app: keep the test's connection (and its transaction)
    open across requests, as Django's own test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_no_generated_input_makes_a_server_error(alice_brand, in_process_wsgi):
    # Hundreds of generated calls as fast as the app answers: far past a brand's default
    # limit, so this brand gets more (the limit has tests of its own, test_api_rate_limit.py).
    Tenant.objects.filter(pk=alice_brand.tenant.pk).update(
        api_rate_per_second=100_000, api_rate_burst=100_000
    )
    schema = from_wsgi("/api/schema/?format=json", application)
    headers = {"Authorization": f"Bearer {alice_brand.api_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def call(case):
                case.call_and_validate(
                    headers=headers, checks=[not_a_server_error, errors_are_problems]
                )

            call()
