"""Errors as application/problem+json (RFC 9457): {type, title, status, detail[, errors]}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
}


def problem_type(code: str) -> str:
    return f"urn:loyaltysms:problem:{code.replace('_', '-')}"


def problem(
    status_code: int, detail: str, *, code: str | None = None, errors: dict | None = None
) -> dict:
    body = {
        "type": problem_type(code) if code else "about:blank",
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def _field_errors(data) -> dict:
    if isinstance(data, dict):
        return {key: _flatten(value) for key, value in data.items()}
    return {"non_field_errors": _flatten(data)}


def _flatten(value):
    if isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            return [str(item) for item in value]
        return [_flatten(item) for item in value]
    if isinstance(value, dict):
        return {key: _flatten(item) for key, item in value.items()}
    return [str(value)]


class ProblemError(Exception):
    """A rule of the domain said no. Services raise it; the API answers with a problem."""

    status_code = 422
    code = "rule-violation"

    def __init__(self, detail: str, *, errors: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


def problem_exception_handler(exc, context):
    if isinstance(exc, ProblemError):
        return Response(
            problem(exc.status_code, exc.detail, code=exc.code, errors=exc.errors),
            status=exc.status_code,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = problem(
            response.status_code,
            "The request has invalid fields.",
            code="validation-error",
            errors=_field_errors(exc.detail),
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        body = problem(
            response.status_code,
            str(detail),
            code=code if isinstance(code, str) and code != "error" else None,
        )
    problem_response = Response(
        body, status=response.status_code, content_type=PROBLEM_CONTENT_TYPE
    )
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem_response[header] = response[header]
    rate_limit = getattr(context.get("request"), "rate_limit", None)
    if rate_limit is not None and rate_limit.refused:
        # A refusal by the brand's API rate limit is not written to the log by Django (a
        # warning per 4xx): a brand flooding past its limit would flood the log, and pay for
        # the lines. loyaltysms.throttling logs a count per brand; the access log has each.
        problem_response._has_been_logged = True
    return problem_response


def problem_json_response(status_code: int, detail: str, **kwargs) -> JsonResponse:
    """For plain Django views under /api/ (unknown routes, server errors)."""
    return JsonResponse(
        problem(status_code, detail, **kwargs),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


__all__ = [
    "ProblemError",
    "problem",
    "problem_exception_handler",
    "problem_json_response",
    "status",
]
