"""Texts from subscribers: keywords act at once, everything lands in the inbox."""

from __future__ import annotations

import re
import weakref
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from loyaltysms.db import insert_unless_exists
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.keywords import Intent, classify, normalize
from messaging.models import (
    ConsentAction,
    ConsentSource,
    InboundKind,
    InboundMessage,
    MessageKind,
    MessageStatus,
    MessagingSettings,
    Sender,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.outbound import dispatch_soon
from messaging.services.setup import brand_name, messaging_settings_get, sender_default
from messaging.services.subscribers import (
    Evidence,
    help_reply,
    opt_out_confirmation,
    opt_out_confirmation_text,
    place_fields,
    subscriber_confirm,
    subscriber_get_or_create,
    subscriber_opt_in,
    subscriber_opt_out,
)
from programs.models import EventKind, SmsStatus

INTENT_KIND = {
    Intent.OPT_OUT: InboundKind.OPT_OUT,
    Intent.OPT_IN: InboundKind.OPT_IN,
    Intent.CONFIRM: InboundKind.CONFIRM,
    Intent.HELP: InboundKind.HELP,
    Intent.JOIN: InboundKind.JOIN,
    Intent.REPLY: InboundKind.REPLY,
    Intent.AMBIGUOUS: InboundKind.REPLY,
}


def inbound_receive(*, sender: Sender, params: dict, now: datetime) -> InboundMessage | None:
    """One inbound text (Twilio's webhook parameters), handled once per MessageSid: a
    duplicate delivery returns None and changes nothing.

    An opt-out is the text that must never wait (compliance.md: before the next message can
    be sent), and the one that comes in bursts after a campaign: it is recorded in one
    statement (opt_out_receive). Whatever that statement leaves alone, and every other text,
    takes inbound_receive_general; both write the same rows."""
    tenant = sender.tenant
    settings = messaging_settings_get(tenant)
    # An unconfirmed opt-in only turns "Y" / "YES" into a confirmation, never a text into an
    # opt-out or out of one: the intent is known before the subscriber row is read.
    if classify(params.get("Body", ""), join_keywords=settings.join_keywords) == Intent.OPT_OUT:
        message = opt_out_receive(tenant=tenant, settings=settings, params=params, now=now)
        if message is not None:
            return message
    return inbound_receive_general(sender=sender, params=params, now=now)


@transaction.atomic
def inbound_receive_general(
    *, sender: Sender, params: dict, now: datetime
) -> InboundMessage | None:
    """Any inbound text, through the services: the subscriber found (or created) and locked,
    the text recorded once per MessageSid (a duplicate returns None), its keyword acted on,
    the inbox told."""
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


# A number as the webhook hands it over (messaging.selectors.e164_or_none): the subscriber
# and member tables store exactly this string, so the statement below can match and store it
# as it is. Anything else goes through the model fields (the general path).
E164 = re.compile(r"\+[1-9][0-9]{1,14}")

# The whole of an opt-out by text, as subscriber_get_or_create, subscriber_opt_out (with
# message_create for the confirmation, and its sms_unsubscribed outbox event) and _to_inbox
# write it, in ONE statement: a STOP
# costs one round trip and no ORM compilation. It acts only when the MessageSid is new and
# the number is not unsubscribed already; otherwise it writes nothing and returns no row.
#
# The subscriber comes first, by INSERT … ON CONFLICT DO UPDATE: it takes the row lock even
# when its WHERE leaves the row as it is, so a STOP waits for a send in progress (the
# dispatcher holds the row FOR SHARE across each carrier call) and two texts from one number
# queue up; the WHERE then sees the row as the other transaction left it, so an opt-out is
# confirmed once. (A MessageSid delivered twice at once comes from one number: the second
# delivery waits on that row too, then finds it unsubscribed.) A new number is inserted as the
# general path leaves it (status "none", then unsubscribed): unsubscribed, with its place,
# its member and its inbox fields. Every read is scoped by %(tenant)s; every value is a
# parameter.
OPT_OUT_BY_TEXT = """
WITH member AS (
    SELECT id FROM programs_member
    WHERE tenant_id = %(tenant)s AND phone = %(phone)s
    ORDER BY id LIMIT 1
), subscriber AS (
    INSERT INTO messaging_subscriber AS s (
        tenant_id, phone, member_id, status, source, timezone, timezone_candidates, region,
        country, pending_since, subscribed_at, unsubscribed_at, last_inbound_at,
        last_message_at, unread_count, needs_attention, created_at, updated_at
    )
    SELECT %(tenant)s, %(phone)s, (SELECT id FROM member), %(unsubscribed)s, %(keyword_source)s,
        %(timezone)s, %(timezone_candidates)s::varchar[], %(region)s, %(country)s, NULL, NULL,
        %(now)s, %(now)s, %(now)s, 0, false, %(written)s, %(now)s
    WHERE NOT EXISTS (
        SELECT FROM messaging_inboundmessage
        WHERE tenant_id = %(tenant)s AND carrier_sid = %(sid)s
    )
    ON CONFLICT (tenant_id, phone) DO UPDATE SET
        status = %(unsubscribed)s,
        unsubscribed_at = %(now)s,
        pending_since = NULL,
        member_id = coalesce(s.member_id, excluded.member_id),
        last_inbound_at = %(now)s,
        last_message_at = %(now)s,
        updated_at = %(now)s
    WHERE s.status <> %(unsubscribed)s
    RETURNING id, member_id
), inbound AS (
    INSERT INTO messaging_inboundmessage (
        tenant_id, subscriber_id, carrier_sid, from_number, to_number, body, num_media, kind,
        needs_attention, created_at
    )
    SELECT %(tenant)s, id, %(sid)s, %(phone)s, %(to_number)s, %(body)s, %(num_media)s,
        %(inbound_kind)s, false, %(now)s
    FROM subscriber
    ON CONFLICT (tenant_id, carrier_sid) DO NOTHING
    RETURNING id
), consent AS (
    INSERT INTO messaging_consentrecord (
        tenant_id, subscriber_id, action, source, disclosure_text, disclosure_version, page_url,
        ip, user_agent, keyword, message_body, inbound_sid, confirmation_text, evidence, actor,
        created_at
    )
    SELECT %(tenant)s, id, %(action)s, %(keyword_source)s, %(disclosure_text)s,
        %(disclosure_version)s, '', NULL, '', %(keyword)s, %(message_body)s, %(sid)s,
        %(confirmation_text)s, '{}'::jsonb, '', %(now)s
    FROM subscriber
    RETURNING id, subscriber_id
), confirmation AS (
    INSERT INTO messaging_outboundmessage (
        tenant_id, subscriber_id, sender_id, "to", kind, source, source_ref, dedupe_key, body,
        encoding, segments, price_estimate, status, status_reason, error_code, carrier_sid,
        attempts, send_after, expires_at, created_at, sending_at, sent_at, delivered_at,
        finished_at, updated_at
    )
    SELECT %(tenant)s, subscriber_id, %(sender)s, %(phone)s, %(transactional)s,
        %(reply_source)s, id::text, %(reply_source)s || ':' || subscriber_id || ':' || id,
        %(reply)s, %(encoding)s, %(segments)s, %(price)s, %(queued)s, '', '', NULL, 0,
        %(now)s, NULL, %(now)s, NULL, NULL, NULL, NULL, %(written)s
    FROM consent
    RETURNING id
), member_status AS (
    UPDATE programs_member AS m SET sms_status = %(member_unsubscribed)s, updated_at = %(now)s
    FROM subscriber
    WHERE m.tenant_id = %(tenant)s AND m.id = subscriber.member_id
        AND m.sms_status <> %(member_unsubscribed)s
), event AS (
    INSERT INTO programs_loyaltyevent (
        tenant_id, member_id, kind, payload, created_at, processed_at, hooked_at
    )
    SELECT %(tenant)s, member_id, %(unsubscribed_event)s,
        jsonb_build_object('subscriber_id', id, 'source', %(keyword_source)s::text), %(now)s,
        NULL, NULL
    FROM subscriber
)
SELECT subscriber.id, (SELECT id FROM inbound), (SELECT id FROM confirmation) FROM subscriber
"""


# PREPAREd once per database connection: planning the statement costs PostgreSQL about twice
# as much as running it (0.5 ms against 0.25 ms). A prepared statement lives as long as its
# session (a rolled-back transaction keeps it), so a reconnect prepares it again; a pooler
# that resets sessions between transactions (pgbouncer in transaction mode) would need
# protocol-level preparing instead.
# Its parameters' types: a prepared statement can't leave them to each use's context.
_TYPES = {
    "tenant": "bigint",
    "sender": "bigint",
    "now": "timestamptz",
    "written": "timestamptz",
    "num_media": "integer",
    "segments": "integer",
    "price": "numeric",
    "timezone_candidates": "varchar[]",
}
_PARAMETERS = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", OPT_OUT_BY_TEXT)))
_PREPARE = (
    f"PREPARE opt_out_by_text ({', '.join(_TYPES.get(name, 'text') for name in _PARAMETERS)})"
    " AS "
    + re.sub(r"%\((\w+)\)s", lambda m: f"${_PARAMETERS.index(m.group(1)) + 1}", OPT_OUT_BY_TEXT)
)
_EXECUTE = f"EXECUTE opt_out_by_text ({', '.join(['%s'] * len(_PARAMETERS))})"
_prepared_on: weakref.WeakSet = weakref.WeakSet()  # the driver's connections


def _opt_out_by_text(values: dict) -> tuple | None:
    with connection.cursor() as cursor:
        if connection.connection not in _prepared_on:
            cursor.execute(_PREPARE)
            _prepared_on.add(connection.connection)
        cursor.execute(_EXECUTE, [values[name] for name in _PARAMETERS])
        return cursor.fetchone()


def opt_out_receive(
    *, tenant: Tenant, settings: MessagingSettings, params: dict, now: datetime
) -> InboundMessage | None:
    """An opt-out text, in one statement (OPT_OUT_BY_TEXT): the number unsubscribed at once,
    its consent record with the same evidence as subscriber_opt_out keeps, exactly one
    confirmation queued, the linked member told, the text in the inbox.

    None when it wrote nothing: a MessageSid seen before, a number unsubscribed already (its
    text is still recorded, by the general path, but confirmed no second time), a number not
    in E.164. The caller then hands the text to inbound_receive_general."""
    phone = params["From"]
    if not E164.fullmatch(phone):
        return None
    body = params.get("Body", "")
    brand = brand_name(tenant, settings)
    reply = opt_out_confirmation(brand, settings.smart_encoding)
    message = InboundMessage(
        tenant=tenant,
        carrier_sid=params["MessageSid"],
        from_number=phone,
        to_number=params.get("To", ""),
        body=body,
        num_media=_int(params.get("NumMedia")),
        kind=InboundKind.OPT_OUT,
        needs_attention=False,
        created_at=now,
    )
    values = {
        "tenant": tenant.pk,
        "phone": phone,
        "sid": message.carrier_sid,
        "to_number": message.to_number,
        "body": body,
        "num_media": message.num_media,
        "now": now,
        **place_fields(phone),
        # The evidence subscriber_opt_out keeps for a keyword (inbound_receive_general).
        "keyword_source": ConsentSource.KEYWORD.value,
        "action": ConsentAction.OPT_OUT.value,
        "disclosure_text": settings.disclosure_text,
        "disclosure_version": str(settings.disclosure_version),
        "keyword": normalize(body)[:40],
        "message_body": body[:1600],
        "confirmation_text": opt_out_confirmation_text(brand),
        # The confirmation as message_create queues it.
        "sender": sender_default(tenant).pk,
        "transactional": MessageKind.TRANSACTIONAL.value,
        "reply_source": "opt_out",
        "reply": reply.text,
        "encoding": reply.info.encoding,
        "segments": reply.info.segments,
        "price": settings.price_per_segment * Decimal(reply.info.segments),
        "queued": MessageStatus.QUEUED.value,
        # When the rows are written, as auto_now(_add) sets it: a new subscriber's
        # created_at, the confirmation's updated_at.
        "written": timezone.now(),
        "unsubscribed": SubscriberStatus.UNSUBSCRIBED.value,
        "inbound_kind": InboundKind.OPT_OUT.value,
        "member_unsubscribed": SmsStatus.UNSUBSCRIBED.value,
        "unsubscribed_event": EventKind.SMS_UNSUBSCRIBED.value,  # the outbox, as _set_status
    }
    row = _opt_out_by_text(values)
    if row is None or row[1] is None:
        return None
    subscriber_id, message.pk, confirmation_id = row
    message.subscriber_id = subscriber_id
    message._state.adding = False
    message._state.db = connection.alias
    if confirmation_id is not None:
        dispatch_soon()
    return message
