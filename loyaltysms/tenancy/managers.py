from django.db import models

from loyaltysms.tenancy.context import TenantScopeError, require_tenant


class TenantManager(models.Manager):
    """The default manager of every tenant-owned model: scoped to the tenant in scope, or raising.

    There is no way to read or create a row of another tenant through it. Code that must see
    every tenant on purpose (all-tenant scans, API-key lookup) calls `.unscoped()`, a name that
    stands out in review.
    """

    def get_queryset(self) -> models.QuerySet:
        tenant = require_tenant(self.model.__name__)
        return super().get_queryset().filter(tenant_id=tenant.pk)

    def unscoped(self) -> models.QuerySet:
        # WARNING: every tenant's rows. Only for code that iterates over all tenants on purpose.
        return super().get_queryset()

    def create(self, **kwargs):
        tenant = require_tenant(self.model.__name__)
        given = kwargs.get("tenant") or kwargs.get("tenant_id")
        given_id = getattr(given, "pk", given)
        if given_id is not None and given_id != tenant.pk:
            raise TenantScopeError(
                f"Refusing to create {self.model.__name__} for tenant {given_id} "
                f"while tenant {tenant.pk} is in scope"
            )
        kwargs.pop("tenant_id", None)
        kwargs["tenant"] = tenant
        return super().get_queryset().create(**kwargs)
