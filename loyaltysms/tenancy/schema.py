from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from loyaltysms.throttling import BrandRateThrottle


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "loyaltysms.tenancy.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A brand's API key: `Authorization: Bearer lsk_…`. Settings → API keys.",
        }


RATE_LIMITED = {
    "description": "The brand's API keys sent more than its rate limit: retry after "
    "`Retry-After` seconds. Nothing was done.",
    "headers": {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."},
        "X-RateLimit-Limit": {
            "schema": {"type": "integer"},
            "description": "The brand's burst: requests accepted at once after a quiet spell.",
        },
        "X-RateLimit-Remaining": {
            "schema": {"type": "integer"},
            "description": "Requests the brand may send now (0 here).",
        },
    },
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
                "required": ["type", "title", "status", "detail"],
            }
        }
    },
}


class ApiSchema(AutoSchema):
    """Every operation the brand's rate limit counts documents its 429."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        throttles = getattr(self.view, "throttle_classes", [])
        if operation is not None and any(issubclass(t, BrandRateThrottle) for t in throttles):
            operation["responses"].setdefault("429", RATE_LIMITED)
        return operation
