"""The two-way inbox: replies from the dashboard, read state."""

from __future__ import annotations

import uuid
from datetime import datetime

from loyaltysms.models import User
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
    with tenant_scope(subscriber.tenant):
        Subscriber.objects.filter(pk=subscriber.pk).update(unread_count=0, needs_attention=False)
