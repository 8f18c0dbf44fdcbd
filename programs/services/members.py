"""Members: enrollment, profile changes, bonuses, manual adjustments, SMS status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from loyaltysms.db import insert_unless_exists, write_together
from loyaltysms.models import Tenant, User
from loyaltysms.tenancy.context import tenant_scope
from programs.models import (
    EntryKind,
    EntrySource,
    EventKind,
    LoyaltyEvent,
    Member,
    PointsEntry,
    SmsStatus,
)
from programs.services.ledger import (
    CREDIT_FIELDS,
    credit_plan,
    event_emit,
    member_lock,
    pending_mature,
    points_credit,
    points_debit,
    tenant_zone,
)
from programs.services.program import program_get
from programs.services.tiers import tier_upgrade_before_write

PROFILE_FIELDS = ("phone", "email", "first_name", "last_name", "timezone", "tags")


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None


class BonusKind:
    ENROLLMENT = "enrollment"
    BIRTHDAY = "birthday"
    SMS = "sms_subscription"


def _profile_changes(member: Member, profile: dict) -> dict:
    """The member's fields that `profile` would change, with their new values."""
    wanted = {field: profile[field] for field in PROFILE_FIELDS if field in profile}
    if "birthday" in profile:
        birthday: Birthday | None = profile["birthday"]
        wanted["birthday_year"] = birthday.year if birthday else None
        wanted["birthday_month"] = birthday.month if birthday else None
        wanted["birthday_day"] = birthday.day if birthday else None
    return {field: value for field, value in wanted.items() if getattr(member, field) != value}


def _apply(member: Member, changes: dict) -> None:
    for field, value in changes.items():
        setattr(member, field, value)


@dataclass(frozen=True)
class Upserted:
    member: Member
    created: bool


@transaction.atomic
def member_upsert(*, tenant: Tenant, external_id: str, now: datetime, **profile) -> Upserted:
    """Create the member with this external_id, or update the fields given.

    A new member is enrolled: member_enrolled event and the enrollment bonus (once ever).
    Concurrent upserts of one new external_id create one member; the others update it.
    """
    with tenant_scope(tenant):
        member = Member.objects.filter(external_id=external_id).first()
        created = False
        if member is None:
            member = Member(tenant=tenant, external_id=external_id, enrolled_at=now)
            member.last_activity_at = now
            _apply(member, _profile_changes(member, profile))
            created = insert_unless_exists(member, conflict=("tenant", "external_id"))
            if not created:  # enrolled by a concurrent request that committed first
                member = Member.objects.get(external_id=external_id)
        if created:
            member_enrolled(member=member, now=now)
            member.refresh_from_db()
            return Upserted(member=member, created=True)
        # Lock only to write: an order for a known member must not queue behind the lock
        # (a racing duplicate would hold it while waiting for the first insert: a deadlock).
        if _profile_changes(member, profile):
            member = member_lock(member)
            changes = _profile_changes(member, profile)
            _apply(member, changes)
            member.save(update_fields=[*changes, "updated_at"])
        return Upserted(member=member, created=False)


def member_enrolled(*, member: Member, now: datetime) -> None:
    event_emit(member, EventKind.MEMBER_ENROLLED, now, external_id=member.external_id)
    bonus_award(member=member, kind=BonusKind.ENROLLMENT, now=now)


def bonus_key(member: Member, kind: str, now: datetime) -> str:
    """The period a bonus is paid once in: ever (enrollment, SMS) or the local year (birthday)."""
    if kind == BonusKind.BIRTHDAY:
        return f"birthday:{now.astimezone(tenant_zone(member.tenant)).year}"
    return kind


BONUS_REASONS = {
    BonusKind.ENROLLMENT: "Welcome bonus for joining",
    BonusKind.BIRTHDAY: "Happy birthday bonus",
    BonusKind.SMS: "Bonus for subscribing to texts",
}


@transaction.atomic
def bonus_award(*, member: Member, kind: str, now: datetime) -> PointsEntry | None:
    """Pay a bonus at most once per its period; None when it is zero or was paid already."""
    program = program_get(member.tenant)
    points = {
        BonusKind.ENROLLMENT: program.enrollment_bonus,
        BonusKind.BIRTHDAY: program.birthday_bonus,
        BonusKind.SMS: program.sms_bonus,
    }[kind]
    if points <= 0:
        return None
    return points_gift(
        member=member,
        points=points,
        reason=BONUS_REASONS[kind],
        key=bonus_key(member, kind, now),
        now=now,
    )


@transaction.atomic
def points_gift(
    *, member: Member, points: int, reason: str, key: str, now: datetime
) -> PointsEntry | None:
    """Points given for nothing spent (a bonus, a flow's award), at most once per `key`
    (≤ 64 characters, unique per member); None when that key was paid already."""
    if points <= 0:
        raise ValueError("a gift is at least one point")
    program = program_get(member.tenant)
    member = member_lock(member)
    if PointsEntry.objects.filter(member=member, bonus_key=key).exists():
        return None
    pending_mature(member=member, now=now)
    credit = credit_plan(
        member=member,
        program=program,
        points=points,
        reason=reason,
        source=EntrySource.BONUS,
        now=now,
        source_ref=key,
        bonus_key=key,
    )
    member.lifetime_points += points
    event = LoyaltyEvent(
        tenant_id=member.tenant_id,
        member=member,
        kind=EventKind.POINTS_EARNED,
        created_at=now,
        payload={"points": points, "source": "bonus", "bonus": key},
    )
    tier_rows, _ = tier_upgrade_before_write(
        member=member, now=now, reason=reason, unsaved_points=points
    )
    write_together(
        inserts=[*credit.rows, event, *tier_rows],
        updates=[(member, [*CREDIT_FIELDS, "lifetime_points", "tier", "tier_review_at"])],
    )
    return credit.entry


@transaction.atomic
def points_adjust(
    *, member: Member, points: int, reason: str, now: datetime, actor: User | None = None
) -> PointsEntry:
    """A manual correction by a person, with the reason they gave. Never below zero (409)."""
    if points == 0:
        raise ValueError("an adjustment moves at least one point")
    program = program_get(member.tenant)
    member = member_lock(member)
    pending_mature(member=member, now=now)
    by = f"manual by {actor.email}" if actor else "manual by API"
    source_ref = actor.email if actor else "api"
    if points > 0:
        entry = points_credit(
            member=member,
            program=program,
            points=points,
            reason=reason,
            source=EntrySource.MANUAL,
            kind=EntryKind.ADJUST,
            now=now,
            source_ref=source_ref,
            actor=actor,
        ).entry
        event_emit(member, EventKind.POINTS_EARNED, now, points=points, source=by)
        return entry
    return points_debit(
        member=member,
        points=-points,
        kind=EntryKind.ADJUST,
        reason=reason,
        source=EntrySource.MANUAL,
        now=now,
        source_ref=source_ref,
        actor=actor,
    )


@transaction.atomic
def member_tags_change(
    *, member: Member, add: list[str], remove: list[str], now: datetime
) -> Member:
    """Add and remove tags (a flow's steps); the others stay, each tag once, in order."""
    member = member_lock(member)
    tags = [t for t in member.tags if t not in remove]
    tags += [t for t in add if t not in tags]
    if tags != member.tags:
        member.tags = tags
        member.updated_at = now
        member.save(update_fields=["tags", "updated_at"])
    return member


def member_sms_status_update(*, member_id: int, status: str, now: datetime) -> None:
    """A status that earns nothing (pending, unsubscribed, none): one UPDATE, no lock."""
    Member.objects.filter(pk=member_id).exclude(sms_status=status).update(
        sms_status=SmsStatus(status), updated_at=now
    )


@transaction.atomic
def member_set_sms_status(*, member: Member, status: str, now: datetime) -> Member:
    """The messaging app reports a member's SMS status; the first subscription earns the bonus."""
    if status != SmsStatus.SUBSCRIBED:
        member_sms_status_update(member_id=member.pk, status=status, now=now)
        member.sms_status = SmsStatus(status)
        return member
    member = member_lock(member)
    if member.sms_status != status:
        member.sms_status = SmsStatus(status)
        member.save(update_fields=["sms_status", "updated_at"])
    if status == SmsStatus.SUBSCRIBED:
        bonus_award(member=member, kind=BonusKind.SMS, now=now)
        member.refresh_from_db()
    return member
