"""The two-way inbox: replies from the dashboard, read state."""

from __future__ import annotations

import uuid
from datetime import datetime

from loyaltysms.models import AuditEvent, User
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageKind, OutboundMessage, Subscriber
from messaging.services.outbound import message_create


def inbox_reply(
    *, subscriber: Subscriber, body: str, actor: User | None, now: datetime
) -> OutboundMessage:
    """A person's reply to a subscriber's text. Conversational, so not held by quiet hours
    or caps, but never sent to a number that has opted out (the dispatcher checks)."""
    tenant = subscriber.tenant
    with tenant_scope(tenant):
        message, _ = message_create(
            tenant=tenant,
            subscriber=subscriber,
            template=body.replace("{", "{{").replace("}", "}}"),
            kind=MessageKind.TRANSACTIONAL,
            source="inbox",
            source_ref=actor.email if actor else "",
            dedupe_key=f"inbox:{subscriber.pk}:{uuid.uuid4().hex}",
            now=now,
        )
        Subscriber.objects.filter(pk=subscriber.pk).update(last_message_at=now, updated_at=now)
        return message


def inbox_mark_read(*, subscriber: Subscriber) -> None:
    """Read; a possible opt-out stays flagged until a person resolves it (inbox_resolve)."""
    with tenant_scope(subscriber.tenant):
        Subscriber.objects.filter(pk=subscriber.pk).update(unread_count=0)


def inbox_resolve(*, subscriber: Subscriber, actor: User | None) -> None:
    """A person looked at a text that might be an opt-out and decided (keeping the number,
    or unsubscribing it). Audited: with a legal deadline, who decided matters."""
    with tenant_scope(subscriber.tenant):
        Subscriber.objects.filter(pk=subscriber.pk).update(needs_attention=False)
        AuditEvent.objects.create(actor=actor, action="inbox.resolved", target=subscriber.e164)
