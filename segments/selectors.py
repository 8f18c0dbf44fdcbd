"""Reads of segments: who matches a rule tree (count, sample, numbers to text), saved ones.

Every function validates the tree against the brand first (RulesInvalid), so an invalid tree
never reaches SQL, and then runs the ONE statement segments/compiler.py builds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.http import Http404
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import Subscriber
from programs.models import Member, Tier
from segments import compiler
from segments.models import Segment
from segments.rules import validate_rules

SAMPLE_MAX = 100
# A segment query hashes up to a row per member (grouped lots, redemptions, numbers); with the
# default 4 MB its hashes spill to disk in batches at a million members.
WORK_MEM = "64MB"


@contextmanager
def segment_cursor() -> Iterator:
    """A cursor in a transaction of its own with room for the segment query's hashes."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        yield cursor


def rules_checked(tenant: Tenant, rules) -> dict:
    """The cleaned tree, or RulesInvalid; tier conditions must name one of the brand's tiers."""
    with tenant_scope(tenant):
        tier_ids = set(Tier.objects.values_list("id", flat=True))
    return validate_rules(rules, tier_ids=tier_ids)


def segment_count(tenant: Tenant, rules, *, now: datetime | None = None) -> int:
    """How many people (members, and subscribers who are not members) match."""
    compiled = compiler.count_sql(tenant, rules_checked(tenant, rules), now or timezone.now())
    with segment_cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class Person:
    member: Member | None  # None: a subscriber who is not a member
    subscriber: Subscriber | None  # None: a member without a number (or not matched by one)


def segment_sample(
    tenant: Tenant, rules, n: int = 10, *, now: datetime | None = None
) -> list[Person]:
    """Up to `n` matching people, the newest first, for the builder's preview."""
    n = max(0, min(n, SAMPLE_MAX))
    compiled = compiler.people_sql(tenant, rules_checked(tenant, rules), now or timezone.now(), n)
    with segment_cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        rows = cursor.fetchall()
    with tenant_scope(tenant):
        members = Member.objects.select_related("tier").in_bulk([m for m, _ in rows if m])
        subscribers = Subscriber.objects.in_bulk([s for _, s in rows if s])
    return [
        Person(members.get(m) if m else None, subscribers.get(s) if s else None) for m, s in rows
    ]


def segment_subscriber_ids_sql(
    tenant: Tenant, rules, *, now: datetime | None = None, subscribed_only: bool = True
) -> tuple[str, tuple]:
    """SQL and parameters of `SELECT id` of the matching numbers, each once, for a campaign's
    INSERT … SELECT. `subscribed_only` (the default) keeps numbers subscribed now; consent is
    checked again at dispatch."""
    compiled = compiler.subscriber_ids_sql(
        tenant, rules_checked(tenant, rules), now or timezone.now(), subscribed_only=subscribed_only
    )
    return compiled.sql, compiled.params


def segment_people_among(
    tenant: Tenant,
    rules,
    *,
    member_ids,
    subscriber_ids,
    now: datetime | None = None,
) -> tuple[set[int], set[int]]:
    """Which of these members, and of these numbers without a member, are in the segment:
    (member ids, subscriber ids). One query."""
    compiled = compiler.people_among_sql(
        tenant,
        rules_checked(tenant, rules),
        now or timezone.now(),
        member_ids=member_ids,
        subscriber_ids=subscriber_ids,
    )
    members, numbers = set(), set()
    with segment_cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        for member_id, subscriber_id in cursor.fetchall():
            if member_id is not None:
                members.add(member_id)
            elif subscriber_id is not None:
                numbers.add(subscriber_id)
    return members, numbers


def segment_subscribers(
    tenant: Tenant, rules, *, now: datetime | None = None, subscribed_only: bool = True
) -> QuerySet:
    """The matching numbers as a Subscriber queryset (the brand's; evaluate it in its scope)."""
    sql, params = segment_subscriber_ids_sql(
        tenant, rules, now=now, subscribed_only=subscribed_only
    )
    with tenant_scope(tenant):
        # The compiler's SQL: constants and parameters only (segments/compiler.py).
        return Subscriber.objects.filter(id__in=RawSQL(sql, params))  # noqa: S611


def get_segment(tenant: Tenant, segment_id: int) -> Segment:
    """The same 404 for "missing" and "another brand's"."""
    with tenant_scope(tenant):
        segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise Http404("No such segment.")
    return segment


def segment_list(tenant: Tenant) -> list[Segment]:
    with tenant_scope(tenant):
        return list(Segment.objects.order_by("name", "id"))
