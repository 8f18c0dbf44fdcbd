"""Reads of the tenancy core."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from loyaltysms.models import (
    ApiKey,
    AuditEvent,
    Export,
    Invitation,
    Membership,
    Tenant,
    User,
)
from loyaltysms.services import hash_secret


def memberships_for(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name")


def membership_for(*, user: User, tenant_id: int) -> Membership | None:
    return (
        Membership.objects.filter(user=user, tenant_id=tenant_id).select_related("tenant").first()
    )


def team_list(tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")


def get_membership(tenant: Tenant, membership_id: int) -> Membership:
    """The same 404 for a membership that is missing and one of another tenant."""
    membership = (
        Membership.objects.filter(tenant=tenant, pk=membership_id).select_related("user").first()
    )
    if membership is None:
        raise Http404("No such team member")
    return membership


def api_key_list(tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("revoked_at", "-created_at")


def get_api_key(tenant: Tenant, api_key_id: int) -> ApiKey:
    api_key = ApiKey.objects.filter(tenant=tenant, pk=api_key_id).first()
    if api_key is None:
        raise Http404("No such API key")
    return api_key


def invitation_list_open(tenant: Tenant) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        tenant=tenant,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).order_by("-created_at")


def get_invitation(tenant: Tenant, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.filter(tenant=tenant, pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation")
    return invitation


def invitation_by_token(token: str) -> Invitation | None:
    # WARNING: unscoped: the person following an invitation link has no tenant yet; the
    # token (256 random bits, stored hashed) is what grants access to this one row.
    return (
        Invitation.objects.unscoped()
        .filter(token_hash=hash_secret(token))
        .select_related("tenant")
        .first()
    )


def api_key_prefix(raw_key: str) -> str | None:
    """The public part of a key (`<kind>_<prefix>_<secret>`), or None if it isn't one."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1]


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, or None. Constant-time in the secret part."""
    prefix = api_key_prefix(raw_key)
    if prefix is None:
        return None
    # WARNING: unscoped: the key is what tells us the tenant.
    api_key = (
        ApiKey.objects.unscoped()
        .filter(prefix=prefix, revoked_at__isnull=True)
        .select_related("tenant")
        .first()
    )
    if api_key is None:
        return None

    if not hmac.compare_digest(api_key.key_hash, hash_secret(raw_key)):
        return None
    return api_key


def audit_list(tenant: Tenant, limit: int = 50) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(tenant=tenant)
        .select_related("actor")
        .order_by("-created_at")[:limit]
    )


def get_export(tenant: Tenant, export_id: int) -> Export:
    """An export of the brand, without its file (read when downloaded); none once it is past
    its keeping time, even before the purge has run."""
    from loyaltysms.exports import EXPORT_KEPT_DAYS

    export = (
        Export.objects.filter(
            tenant=tenant,
            pk=export_id,
            created_at__gte=timezone.now() - timedelta(days=EXPORT_KEPT_DAYS),
        )
        .defer("content")
        .first()
    )
    if export is None:
        raise Http404("No such export")
    return export
