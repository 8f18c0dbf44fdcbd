"""DRF building blocks that make an unscoped API endpoint hard to write by accident.

- ApiKeyAuthentication puts the key's tenant in scope for the rest of the request, so every
  tenant-owned manager is already filtered to it (and raises without it).
- TenantGenericAPIView refuses subclasses that override get_queryset/get_object (PostHog's
  protected-methods rule): they declare `model` and may narrow with scoped_queryset(); the
  queryset always starts from `model.objects.filter(tenant=request.tenant)`.
- Every post() is wrapped for Idempotency-Key (loyaltysms.idempotency).
- Every answer counted by the brand's rate limit carries X-RateLimit-Limit / -Remaining.
- A class-level `queryset = Model.objects.all()` on a tenant-owned model raises at import
  time (no tenant is in scope then), so the usual DRF idiom cannot slip through either.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.generics import GenericAPIView
from rest_framework.views import APIView

from loyaltysms.idempotency import idempotent
from loyaltysms.models import Tenant


class IdempotentPostMixin:
    """Every post() of every subclass honours Idempotency-Key (api.md Conventions)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        post = cls.__dict__.get("post")
        if post is not None and not getattr(post, "idempotent", False):
            cls.post = idempotent(post)


class RateLimitHeadersMixin:
    """X-RateLimit-Limit / -Remaining on every answer the brand's rate limit counted (the
    429s included), from what the brand's rate limit learnt (loyaltysms.throttling)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        rate_limit = getattr(request, "rate_limit", None)
        if rate_limit is not None:
            response["X-RateLimit-Limit"] = str(rate_limit.burst)
            response["X-RateLimit-Remaining"] = str(rate_limit.remaining)
        return response


class TenantAPIView(RateLimitHeadersMixin, IdempotentPostMixin, APIView):
    """Base of every storefront endpoint that isn't a plain model list/detail."""

    @property
    def tenant(self) -> Tenant:
        return self.request.auth.tenant


class TenantGenericAPIView(RateLimitHeadersMixin, IdempotentPostMixin, GenericAPIView):
    """Base of every model-backed storefront endpoint; see the module docstring."""

    model = None
    protected_methods = {
        "get_queryset": "declare `model` and override scoped_queryset() instead",
        "get_object": "use lookup_field / scoped_queryset(); objects must come from the scope",
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, instead in TenantGenericAPIView.protected_methods.items():
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} must not override {name}(): {instead}")

    @property
    def tenant(self) -> Tenant:
        return self.request.auth.tenant

    def get_queryset(self) -> QuerySet:
        if self.model is None:
            raise TypeError(f"{type(self).__name__} must declare `model`")
        return self.scoped_queryset(self.model.objects.filter(tenant=self.tenant))

    def scoped_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset
