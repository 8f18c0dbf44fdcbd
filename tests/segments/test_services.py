"""Saved segments: created, renamed, changed and deleted through the services, refused when
invalid, and invisible to another brand."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.utils import timezone

from loyaltysms.models import AuditEvent
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import tenant_scope
from segments.models import Segment
from segments.rules import RulesInvalid
from segments.selectors import get_segment, segment_count, segment_list
from segments.services import (
    SegmentNameTaken,
    segment_create,
    segment_delete,
    segment_update,
)

VIPS = {"field": "tags", "op": "has", "value": "vip"}


def test_a_segment_is_saved_as_given_and_audited(alice_brand):
    tenant, now = alice_brand.tenant, timezone.now()
    segment = segment_create(
        tenant=tenant, name=" VIPs ", rules=VIPS, now=now, actor=alice_brand.owner
    )
    assert (segment.name, segment.rules, segment.created_by) == ("VIPs", VIPS, alice_brand.owner)
    assert get_segment(tenant, segment.pk) == segment
    assert segment_count(tenant, get_segment(tenant, segment.pk).rules) == 0
    with tenant_scope(tenant):
        assert AuditEvent.objects.filter(action="segment.created", target="VIPs").exists()


def test_invalid_rules_and_taken_names_are_refused(alice_brand):
    tenant, now = alice_brand.tenant, timezone.now()
    with pytest.raises(RulesInvalid):
        segment_create(tenant=tenant, name="Bad", rules={"field": "x"}, now=now)
    segment_create(tenant=tenant, name="VIPs", rules=VIPS, now=now)
    with pytest.raises(SegmentNameTaken):
        segment_create(tenant=tenant, name="VIPs", rules=VIPS, now=now)
    with pytest.raises(ProblemError):
        segment_create(tenant=tenant, name="  ", rules=VIPS, now=now)
    with tenant_scope(tenant):
        assert list(Segment.objects.values_list("name", flat=True)) == ["VIPs"]


def test_update_changes_name_and_rules_and_checks_them(alice_brand):
    tenant, now = alice_brand.tenant, timezone.now()
    segment = segment_create(tenant=tenant, name="VIPs", rules=VIPS, now=now)
    other = segment_create(tenant=tenant, name="Tea", rules=VIPS, now=now)
    lapsed = {"field": "days_since_last_order", "op": "gte", "value": 90}
    segment_update(segment=segment, name="Lapsed", rules=lapsed, now=now)
    segment.refresh_from_db()
    assert (segment.name, segment.rules) == ("Lapsed", lapsed)
    with pytest.raises(RulesInvalid):
        segment_update(segment=segment, rules={"not": []}, now=now)
    with pytest.raises(SegmentNameTaken):
        segment_update(segment=other, name="Lapsed", now=now)
    segment.refresh_from_db()
    assert segment.rules == lapsed
    segment_delete(segment=other)
    assert [s.name for s in segment_list(tenant)] == ["Lapsed"]


def test_another_brands_segment_is_not_found(alice_brand, charlie_brand):
    segment = segment_create(tenant=alice_brand.tenant, name="VIPs", rules=VIPS, now=timezone.now())
    with pytest.raises(Http404):
        get_segment(charlie_brand.tenant, segment.pk)
    with pytest.raises(Http404):
        get_segment(alice_brand.tenant, segment.pk + 1000)
    assert segment_list(charlie_brand.tenant) == []
    # The same name is free in another brand.
    segment_create(tenant=charlie_brand.tenant, name="VIPs", rules=VIPS, now=timezone.now())
