"""Texts from subscribers: keywords act at once, everything lands in the inbox."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import F

from loyaltysms.db import insert_unless_exists
from loyaltysms.tenancy.context import tenant_scope
from messaging.keywords import Intent, classify, normalize
from messaging.models import (
    ConsentSource,
    InboundKind,
    InboundMessage,
    Sender,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.setup import messaging_settings_get
from messaging.services.subscribers import (
    Evidence,
    help_reply,
    subscriber_confirm,
    subscriber_get_or_create,
    subscriber_opt_in,
    subscriber_opt_out,
)

INTENT_KIND = {
    Intent.OPT_OUT: InboundKind.OPT_OUT,
    Intent.OPT_IN: InboundKind.OPT_IN,
    Intent.CONFIRM: InboundKind.CONFIRM,
    Intent.HELP: InboundKind.HELP,
    Intent.JOIN: InboundKind.JOIN,
    Intent.REPLY: InboundKind.REPLY,
    Intent.AMBIGUOUS: InboundKind.REPLY,
}


@transaction.atomic
def inbound_receive(*, sender: Sender, params: dict, now: datetime) -> InboundMessage | None:
    """One inbound text (Twilio's webhook parameters), handled once per MessageSid: a
    duplicate delivery returns None and changes nothing."""
    tenant = sender.tenant
    with tenant_scope(tenant):
        settings = messaging_settings_get(tenant)
        phone = params["From"]
        body = params.get("Body", "")
        subscriber, _ = subscriber_get_or_create(
            tenant=tenant, phone=phone, source=ConsentSource.KEYWORD, now=now
        )
        intent = classify(
            body,
            join_keywords=settings.join_keywords,
            pending=subscriber.status == SubscriberStatus.PENDING,
        )
        message = InboundMessage(
            tenant=tenant,
            subscriber=subscriber,
            carrier_sid=params["MessageSid"],
            from_number=phone,
            to_number=params.get("To", ""),
            body=body,
            num_media=_int(params.get("NumMedia")),
            kind=INTENT_KIND[intent],
            needs_attention=intent == Intent.AMBIGUOUS,
            created_at=now,
        )
        if not insert_unless_exists(message, conflict=("tenant", "carrier_sid")):
            return None
        evidence = Evidence(
            source=ConsentSource.KEYWORD,
            keyword=normalize(body)[:40] if intent != Intent.REPLY else "",
            message_body=body,
            inbound_sid=message.carrier_sid,
            # What the brand discloses wherever it advertises its keywords; the texts sent
            # in answer are kept with the record too.
            disclosure_text=settings.disclosure_text,
            disclosure_version=str(settings.disclosure_version),
        )
        _act(intent, subscriber, evidence, settings, now)
        _to_inbox(subscriber, intent, now)
        return message


def _act(intent, subscriber: Subscriber, evidence: Evidence, settings, now: datetime) -> None:
    status = subscriber.status
    if intent == Intent.OPT_OUT:
        subscriber_opt_out(subscriber=subscriber, evidence=evidence, now=now)
    elif intent == Intent.CONFIRM or (
        intent == Intent.OPT_IN and status == SubscriberStatus.PENDING
    ):
        subscriber_confirm(subscriber=subscriber, evidence=evidence, now=now)
    elif intent == Intent.OPT_IN and status == SubscriberStatus.UNSUBSCRIBED:
        # START after STOP: the subscriber asked to come back; no second confirmation step.
        subscriber_opt_in(
            tenant=subscriber.tenant,
            phone=subscriber.e164,
            evidence=evidence,
            now=now,
            double_opt_in=False,
        )
    elif (intent in (Intent.OPT_IN, Intent.JOIN) and status == SubscriberStatus.NONE) or (
        intent == Intent.JOIN and status == SubscriberStatus.UNSUBSCRIBED
    ):
        # A first opt-in by text (or a JOIN after STOP) is confirmed with a "Y" reply.
        subscriber_opt_in(
            tenant=subscriber.tenant, phone=subscriber.e164, evidence=evidence, now=now
        )
    elif intent == Intent.HELP:
        help_reply(subscriber=subscriber, inbound_sid=evidence.inbound_sid, now=now)


def _to_inbox(subscriber: Subscriber, intent: Intent, now: datetime) -> None:
    changes = {"last_inbound_at": now, "last_message_at": now, "updated_at": now}
    if intent in (Intent.REPLY, Intent.AMBIGUOUS):
        changes["unread_count"] = F("unread_count") + 1
    if intent == Intent.AMBIGUOUS:
        changes["needs_attention"] = True
    Subscriber.objects.filter(pk=subscriber.pk).update(**changes)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
