"""Writes of segments: saving a named rule tree, renaming it, changing its rules, deleting it.

A tree is validated against the brand (its tiers) before it is stored, and stored as given.
Every change leaves an audit row.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import ProtectedError

from loyaltysms.models import Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from segments.models import Segment
from segments.selectors import rules_checked


class SegmentNameTaken(ProblemError):
    status_code = 409
    code = "segment-name-taken"


def _clean_name(tenant: Tenant, name: str, *, exclude: int | None = None) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ProblemError(
            "A segment needs a name of 1 to 100 characters.",
            errors={"name": ["1 to 100 characters"]},
        )
    taken = Segment.objects.filter(name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise SegmentNameTaken(
            f"A segment named {name!r} exists already.", errors={"name": ["already taken"]}
        )
    return name


@transaction.atomic
def segment_create(
    *, tenant: Tenant, name: str, rules, now: datetime, actor: User | None = None
) -> Segment:
    """Save a named tree; invalid rules (RulesInvalid) and taken names are refused."""
    rules_checked(tenant, rules)
    with tenant_scope(tenant):
        segment = Segment.objects.create(
            name=_clean_name(tenant, name),
            rules=rules,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    audit(tenant=tenant, actor=actor, action="segment.created", target=segment.name)
    return segment


@transaction.atomic
def segment_update(
    *,
    segment: Segment,
    now: datetime,
    name: str | None = None,
    rules=None,
    actor: User | None = None,
) -> Segment:
    tenant = segment.tenant
    fields = ["updated_at"]
    with tenant_scope(tenant):
        if name is not None:
            segment.name = _clean_name(tenant, name, exclude=segment.pk)
            fields.append("name")
        if rules is not None:
            rules_checked(tenant, rules)
            segment.rules = rules
            fields.append("rules")
        segment.updated_at = now
        segment.save(update_fields=fields)
    audit(
        tenant=tenant,
        actor=actor,
        action="segment.updated",
        target=segment.name,
        fields=[f for f in fields if f != "updated_at"],
    )
    return segment


class SegmentInUse(ProblemError):
    status_code = 409
    code = "segment-in-use"


@transaction.atomic
def segment_delete(*, segment: Segment, actor: User | None = None) -> None:
    """Delete a segment; refused while a flow filters on it (campaigns name segments by id
    and find a deleted one at launch)."""
    tenant = segment.tenant
    with tenant_scope(tenant):
        try:
            Segment.objects.filter(pk=segment.pk).delete()
        except ProtectedError as error:
            users = sorted({str(obj) for obj in error.protected_objects})
            raise SegmentInUse(
                f"The flow{'s' if len(users) > 1 else ''} {', '.join(users)} only let people "
                "in this segment enter: change or delete them first."
            ) from error
    audit(tenant=tenant, actor=actor, action="segment.deleted", target=segment.name)
