"""The tenant in scope, held in a ContextVar.

Set by the dashboard middleware (from the session), by API-key authentication, by the receiving
number (inbound webhooks), by the message id (status callbacks) and by @tenant_task. Each thread
starts with no tenant, and every setter restores the previous value, so a scope never leaks into
the next request or task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loyaltysms.models import Tenant

_current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)


class TenantScopeError(RuntimeError):
    """A tenant-owned table was touched with no tenant in scope (or the wrong one)."""


def current_tenant() -> Tenant | None:
    return _current_tenant.get()


def current_tenant_id() -> int | None:
    tenant = _current_tenant.get()
    return tenant.pk if tenant is not None else None


def require_tenant(what: object = "this") -> Tenant:
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantScopeError(
            f"No tenant in scope for {what}: wrap the code in tenant_scope(tenant), or use "
            ".unscoped() if it really must see every tenant."
        )
    return tenant


def activate(tenant: Tenant | None) -> Token:
    """Put `tenant` in scope until `deactivate(token)`; prefer tenant_scope() where possible."""
    return _current_tenant.set(tenant)


def deactivate(token: Token) -> None:
    _current_tenant.reset(token)


@contextmanager
def tenant_scope(tenant: Tenant) -> Iterator[Tenant]:
    if tenant is None:
        raise TenantScopeError("tenant_scope() needs a tenant")
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)
