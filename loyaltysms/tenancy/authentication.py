"""API-key authentication and the tenant permission.

Kept apart from the base views: DRF imports its DEFAULT_AUTHENTICATION_CLASSES while
`rest_framework.views` is still loading, so this module must not import DRF views.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from loyaltysms.models import ApiKey
from loyaltysms.selectors import api_key_authenticate
from loyaltysms.tenancy.context import activate, current_tenant
from loyaltysms.throttling import refuse_over_limit, remember_key

# last_used_at is informative; writing it on every request would cost a row update each time.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyPrincipal:
    """request.user for API calls: the storefront holding the key, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.tenant = api_key.tenant
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`. No key or a bad one → 401 problem."""

    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: Bearer <key>")
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key") from None
        # A brand over its rate limit is refused here, before its key's row is read, when
        # this process knows the key (loyaltysms.throttling).
        refuse_over_limit(request, raw_key)
        api_key = api_key_authenticate(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        remember_key(api_key)
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.unscoped().filter(pk=api_key.pk).update(last_used_at=now)
        activate(api_key.tenant)  # undone by TenantContextMiddleware at the end of the request
        request.tenant = api_key.tenant
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="loyaltysms"'


class HasTenant(BasePermission):
    """Authenticated by an API key whose tenant is the one in scope."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ApiKey):
            return False
        tenant = current_tenant()
        return tenant is not None and tenant.pk == request.auth.tenant_id
