"""The programs outbox fanned out to the brand's webhook endpoints: one delivery per event and
subscribed endpoint, written in the same transaction that marks the event `hooked_at`.

Events are read in id order, a batch per transaction, under a per-brand advisory lock: one
worker at a time fans out a brand's events, so deliveries are written in event order (the
order each member's deliveries go out in). The batch is marked at the end with a
conditional UPDATE (`hooked_at IS NULL`); if it marks fewer rows than were read, another
worker got there first and the whole batch — its deliveries with it — rolls back. So an
event is fanned out exactly once, and one a worker dies on is simply read again.

Why not `FOR UPDATE SKIP LOCKED` on the read: the flow engine locks the same rows while it
acts on them, and skipping those would fan a member's later event out before an earlier one.
A plain read never skips; the rows are locked only from the marking to the commit. The flow
engine's claim waits for them too (plain FOR UPDATE, automations/services/flow_triggers.py),
and both lock in id order, so they wait for each other but never deadlock. `hooked_at` is
this app's own marker, independent of the flow engine's `processed_at`: neither waits for
the other's progress.

Events of brands without an active endpoint are marked in bulk, so the partial index of
unmarked events (event_unhooked) stays small. An endpoint receives the events committed
after it was: the bulk marking checks for endpoints in the same statement, so an event
committed after an endpoint can't be marked without being fanned out to it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection, transaction

from hooks.models import DeliveryStatus, HookEvent, WebhookDelivery, WebhookEndpoint
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import EventKind
from programs.outbox import OutboxEvent

BATCH = 500
MARK_BATCH = 5000

BRAND_LOCK = "SELECT pg_try_advisory_xact_lock(7410, %s::int)"
READ_EVENTS = """
SELECT id, kind, member_id, payload, created_at FROM programs_loyaltyevent
WHERE tenant_id = %s AND hooked_at IS NULL
ORDER BY id
LIMIT %s
"""
# Locked in id order, as the flow engine's claim locks them (FOR UPDATE … ORDER BY id): two
# transactions taking the same events in one order can wait on each other but never deadlock.
MARK_HOOKED = """
WITH locked AS (
    SELECT id FROM programs_loyaltyevent
    WHERE tenant_id = %s AND id = ANY(%s) AND hooked_at IS NULL
    ORDER BY id
    FOR UPDATE
)
UPDATE programs_loyaltyevent e SET hooked_at = %s FROM locked WHERE e.id = locked.id
"""


class FannedOutElsewhere(Exception):
    """Another worker marked events of this batch first: the batch rolls back."""


MEMBERS = """
SELECT id, external_id, email, phone, first_name, last_name FROM programs_member
WHERE tenant_id = %s AND id = ANY(%s)
"""
NUMBERS = "SELECT id, phone FROM messaging_subscriber WHERE tenant_id = %s AND id = ANY(%s)"

# WARNING: every tenant's unmarked events (the small partial index event_unhooked).
TENANTS_WITH_UNHOOKED = """
SELECT t.id, EXISTS (
    SELECT FROM hooks_webhookendpoint ep WHERE ep.tenant_id = t.id AND ep.active
) FROM loyaltysms_tenant t
WHERE EXISTS (
    SELECT FROM programs_loyaltyevent e WHERE e.tenant_id = t.id AND e.hooked_at IS NULL
)
"""
# WARNING: every tenant's. Events of brands with no active endpoint, marked without
# deliveries; the endpoint check is in the same statement (see the module's docstring).
MARK_WITHOUT_ENDPOINTS = """
UPDATE programs_loyaltyevent SET hooked_at = %s WHERE id IN (
    SELECT e.id FROM programs_loyaltyevent e
    WHERE e.tenant_id = ANY(%s) AND e.hooked_at IS NULL AND NOT EXISTS (
        SELECT FROM hooks_webhookendpoint ep WHERE ep.tenant_id = e.tenant_id AND ep.active
    )
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
"""

# What each kind's `data` holds: the outbox payload's public part (ids that the API also
# shows; internal ones such as the subscriber's row id stay out).
PUBLIC_DATA = {
    HookEvent.POINTS_EARNED: ("points", "source", "order_id", "bonus"),
    HookEvent.TIER_CHANGED: ("direction", "from_tier", "to_tier", "from_tier_id", "to_tier_id"),
    HookEvent.SMS_SUBSCRIBED: ("source",),
    HookEvent.SMS_UNSUBSCRIBED: ("source",),
    HookEvent.REWARD_REDEEMED: ("reward_id", "reward", "redemption_id", "code"),
}
SMS_KINDS = {EventKind.SMS_SUBSCRIBED, EventKind.SMS_UNSUBSCRIBED}


class Event(OutboxEvent):
    @property
    def subscriber_id(self) -> int | None:
        return self.payload.get("subscriber_id")

    @property
    def member_key(self) -> str:
        """Whose event: a member's, or a number's that belongs to no member."""
        if self.member_id is not None:
            return f"m{self.member_id}"
        if self.subscriber_id is not None:
            return f"s{self.subscriber_id}"
        return f"e{self.id}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_payload(event: Event, *, brand: str, member: dict | None, phone: str | None) -> dict:
    """The event as receivers see it (docs/webhooks.md)."""
    data = {k: event.payload[k] for k in PUBLIC_DATA.get(event.kind, ()) if k in event.payload}
    if event.kind in SMS_KINDS:
        data["phone"] = phone
    if str(data.get("source", "")).startswith("manual"):
        data["source"] = "manual"  # "manual by <a teammate's email>": who, in the activity log
    return {
        "id": event.id,
        "type": event.kind,
        "created_at": iso(event.created_at),
        "brand": brand,
        "member": member,
        "data": data,
    }


def events_fan_out(*, tenant: Tenant, now: datetime, batch: int = BATCH) -> int:
    """Fan the brand's unmarked events out to its active endpoints, a batch per
    transaction; how many events were marked. Returns at once while another worker holds
    the brand."""
    done = 0
    while True:
        try:
            read = _fan_out_batch(tenant, now, batch)
        except FannedOutElsewhere:
            return done
        if read is None:
            return done
        done += read
        if read < batch:
            return done


@transaction.atomic
def _fan_out_batch(tenant: Tenant, now: datetime, batch: int) -> int | None:
    """One batch: how many events it marked; None if another worker holds the brand."""
    with tenant_scope(tenant), connection.cursor() as cursor:
        cursor.execute(BRAND_LOCK, [tenant.pk])
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(READ_EVENTS, [tenant.pk, batch])
        events = Event.from_rows(cursor.fetchall())
        if not events:
            return 0
        # Read after the events (a later snapshot): an endpoint committed before an event
        # is always seen with it.
        endpoints = list(WebhookEndpoint.objects.filter(active=True).only("id", "events"))
        WebhookDelivery.objects.bulk_create(_deliveries(tenant, endpoints, events, now))
        cursor.execute(MARK_HOOKED, [tenant.pk, [e.id for e in events], now])
        if cursor.rowcount != len(events):
            raise FannedOutElsewhere
        return len(events)


def _deliveries(
    tenant: Tenant, endpoints: list[WebhookEndpoint], events: list[Event], now: datetime
) -> list[WebhookDelivery]:
    pairs = [(event, ep) for event in events for ep in endpoints if event.kind in ep.events]
    if not pairs:
        return []
    members, phones = _people(tenant, [event for event, _ in pairs])
    payloads: dict[int, dict] = {}
    deliveries = []
    for event, endpoint in pairs:  # event order, then endpoint order: ids in that order
        if event.id not in payloads:
            payloads[event.id] = public_payload(
                event,
                brand=tenant.slug,
                member=members.get(event.member_id),
                phone=phones.get(event.subscriber_id),
            )
        deliveries.append(
            WebhookDelivery(
                tenant=tenant,
                endpoint_id=endpoint.pk,
                event_id=event.id,
                event_kind=event.kind,
                member_key=event.member_key,
                payload=payloads[event.id],
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return deliveries


def _people(tenant: Tenant, events: list[Event]) -> tuple[dict, dict]:
    """member id → the member as payloads show it; subscriber id → its number."""
    member_ids = sorted({e.member_id for e in events if e.member_id is not None})
    subscriber_ids = sorted(
        {e.subscriber_id for e in events if e.kind in SMS_KINDS and e.subscriber_id}
    )
    members, phones = {}, {}
    with connection.cursor() as cursor:
        if member_ids:
            cursor.execute(MEMBERS, [tenant.pk, member_ids])
            for id, external_id, email, phone, first, last in cursor.fetchall():
                members[id] = {
                    "external_id": external_id,
                    "email": email or None,
                    "phone": phone or None,
                    "first_name": first,
                    "last_name": last,
                }
        if subscriber_ids:
            cursor.execute(NUMBERS, [tenant.pk, subscriber_ids])
            phones = dict(cursor.fetchall())
    return members, phones


def tenants_to_fan_out() -> tuple[list[int], list[int]]:
    """Brands with unmarked events: (with an active endpoint, without).
    WARNING: reads every tenant's unmarked events."""
    with connection.cursor() as cursor:
        cursor.execute(TENANTS_WITH_UNHOOKED)
        rows = cursor.fetchall()
    return [t for t, has in rows if has], [t for t, has in rows if not has]


def events_mark_without_endpoints(*, tenant_ids: list[int], now: datetime) -> int:
    """Mark the unmarked events of these brands, as long as they have no active endpoint,
    in batches of their own transactions; how many. WARNING: writes several tenants' rows."""
    marked = 0
    while tenant_ids:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(MARK_WITHOUT_ENDPOINTS, [now, tenant_ids, MARK_BATCH])
            count = cursor.rowcount
        marked += count
        if count < MARK_BATCH:
            return marked
    return marked
