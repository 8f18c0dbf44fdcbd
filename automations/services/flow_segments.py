"""A flow's segment filter: who of those a trigger brings in is in the flow's segment now."""

from __future__ import annotations

import logging
from datetime import datetime

from loyaltysms.models import Tenant
from segments.models import Segment
from segments.rules import RulesInvalid
from segments.selectors import segment_people_among

logger = logging.getLogger(__name__)


def in_segment(tenant: Tenant, segment: Segment, entries: list, now: datetime) -> list:
    """The entries whose person (a member, or a number without a member) matches the
    segment — one query for all of them. A segment that no longer compiles (a tier it names
    was removed) lets nobody in."""
    try:
        members, numbers = segment_people_among(
            tenant,
            segment.rules,
            member_ids={e.member_id for e in entries if e.member_id is not None},
            subscriber_ids={
                e.subscriber_id for e in entries if e.member_id is None and e.subscriber_id
            },
            now=now,
        )
    except RulesInvalid as error:
        logger.warning("segment %s no longer compiles (%s): nobody enters", segment.pk, error)
        return []
    return [
        e
        for e in entries
        if (e.member_id in members if e.member_id is not None else e.subscriber_id in numbers)
    ]
