"""Subscribing and unsubscribing, each change with its evidence (compliance.md, Consent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from django.db import transaction

from loyaltysms.db import insert_unless_exists
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.compliance import place_of
from messaging.models import (
    ConsentAction,
    ConsentRecord,
    ConsentSource,
    MessageKind,
    MessagingSettings,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.outbound import Rendered, check_template, compose, message_create
from messaging.services.setup import brand_name, messaging_settings_get
from programs.models import EventKind, LoyaltyEvent, Member, SmsStatus
from programs.services.members import member_set_sms_status, member_sms_status_update


@dataclass
class Evidence:
    """What the subscriber saw and did, kept with every consent change."""

    source: str
    disclosure_text: str = ""
    disclosure_version: str = ""
    page_url: str = ""
    ip: str | None = None
    user_agent: str = ""
    keyword: str = ""
    message_body: str = ""
    inbound_sid: str = ""
    actor: str = ""
    extra: dict = field(default_factory=dict)


# The texts compliance.md prescribes.
def confirm_request_text(brand: str, settings: MessagingSettings) -> str:
    return (
        f"{brand}: Reply Y to confirm you want to receive {settings.frequency_text.lower()} "
        "at this number. Msg & data rates may apply. Reply HELP for help, STOP to cancel."
    )


def opt_in_confirmation_text(brand: str, settings: MessagingSettings) -> str:
    text = (
        f"{brand}: You're subscribed! {settings.frequency_text}. Msg & data rates may apply. "
        "Reply HELP for help, STOP to cancel."
    )
    links = [
        f"{label}: {url}"
        for label, url in (("Terms", settings.terms_url), ("Privacy", settings.privacy_url))
        if url
    ]
    return f"{text} {' '.join(links)}" if links else text


def opt_out_confirmation_text(brand: str) -> str:
    return (
        f"{brand}: You're unsubscribed and will get no more messages. Reply START to resubscribe."
    )


def help_text(brand: str, settings: MessagingSettings) -> str:
    return f"{brand}: {settings.help_text} Reply STOP to cancel. Msg&data rates may apply."


def as_template(text: str) -> str:
    """A fixed text as a template that renders to exactly that text (braces escaped)."""
    return text.replace("{", "{{").replace("}", "}}")


@lru_cache(maxsize=1024)
def opt_out_confirmation(brand: str, smart_encoding: bool) -> Rendered:
    """The opt-out confirmation as message_create() would queue it (transactional: no footer,
    no links), counted once per brand: every STOP of a brand gets the same text."""
    template = as_template(opt_out_confirmation_text(brand))
    check_template(template)
    return compose(
        template,
        values={"brand": brand},
        kind=MessageKind.TRANSACTIONAL,
        settings=MessagingSettings(smart_encoding=smart_encoding),
        smart_encoding=smart_encoding,
    )


def place_fields(phone: str) -> dict:
    """What a new subscriber row knows from its number alone: its zone (or the candidates
    when the number could be in several), its state or province, its country."""
    place = place_of(phone)
    return {
        "timezone": place.zones[0] if len(place.zones) == 1 else "",
        "timezone_candidates": list(place.zones) if len(place.zones) > 1 else [],
        "region": place.region,
        "country": place.country,
    }


def subscriber_get_or_create(
    *, tenant: Tenant, phone: str, source: str, now: datetime, lock: bool = True
) -> tuple[Subscriber, bool]:
    """The brand's subscriber row for a number (E.164), created as "none" if new; locked for
    the caller's transaction so concurrent changes to one number queue up."""
    with tenant_scope(tenant):
        subscriber = Subscriber(
            tenant=tenant,
            phone=phone,
            status=SubscriberStatus.NONE,
            source=source,
            **place_fields(phone),
            created_at=now,
            updated_at=now,
        )
        created = insert_unless_exists(subscriber, conflict=("tenant", "phone"))
        rows = Subscriber.objects.filter(phone=phone)
        if lock:
            rows = rows.select_for_update(no_key=True)
        subscriber = rows.get()
        subscriber.tenant = tenant  # the caller's, so nothing reads it again
        if subscriber.member_id is None:
            member = Member.objects.filter(phone=phone).order_by("id").first()
            if member is not None:
                subscriber.member = member
                subscriber.save(update_fields=["member", "updated_at"])
        return subscriber, created


def _record(
    subscriber: Subscriber, action: str, evidence: Evidence, now: datetime, confirmation: str = ""
) -> ConsentRecord:
    return ConsentRecord.objects.create(
        subscriber=subscriber,
        action=action,
        source=evidence.source,
        disclosure_text=evidence.disclosure_text,
        disclosure_version=evidence.disclosure_version,
        page_url=evidence.page_url,
        ip=evidence.ip,
        user_agent=evidence.user_agent[:500],
        keyword=evidence.keyword,
        message_body=evidence.message_body[:1600],
        inbound_sid=evidence.inbound_sid,
        confirmation_text=confirmation,
        evidence=evidence.extra,
        actor=evidence.actor,
        created_at=now,
    )


def _report_to_member(subscriber: Subscriber, now: datetime) -> None:
    if subscriber.member_id is None:
        return
    status = {
        SubscriberStatus.SUBSCRIBED: SmsStatus.SUBSCRIBED,
        SubscriberStatus.PENDING: SmsStatus.PENDING,
        SubscriberStatus.UNSUBSCRIBED: SmsStatus.UNSUBSCRIBED,
    }.get(subscriber.status, SmsStatus.NONE)
    if status == SmsStatus.SUBSCRIBED:  # may earn the SMS bonus: the ledger's locked path
        member_set_sms_status(member=subscriber.member, status=status, now=now)
    else:  # nothing to earn: one UPDATE by id, without loading the member
        member_sms_status_update(member_id=subscriber.member_id, status=status, now=now)


def _set_status(
    subscriber: Subscriber, status: str, now: datetime, source: str | None = None
) -> None:
    subscriber.status = status
    fields = ["status", "updated_at"]
    if status == SubscriberStatus.PENDING:
        subscriber.pending_since = now
        fields.append("pending_since")
    elif status == SubscriberStatus.SUBSCRIBED:
        subscriber.subscribed_at = now
        subscriber.pending_since = None
        fields += ["subscribed_at", "pending_since"]
    elif status == SubscriberStatus.UNSUBSCRIBED:
        subscriber.unsubscribed_at = now
        subscriber.pending_since = None
        fields += ["unsubscribed_at", "pending_since"]
    subscriber.save(update_fields=fields)
    _report_to_member(subscriber, now)
    if status in (SubscriberStatus.SUBSCRIBED, SubscriberStatus.UNSUBSCRIBED):
        # The outbox events flows start from (welcome series, join invites) and the brand's
        # webhooks report; `source`: where the change came from (the subscription's source
        # unless the caller names another, as an opt-out does).
        LoyaltyEvent.objects.create(
            tenant_id=subscriber.tenant_id,
            member_id=subscriber.member_id,
            kind=EventKind.SMS_SUBSCRIBED
            if status == SubscriberStatus.SUBSCRIBED
            else EventKind.SMS_UNSUBSCRIBED,
            payload={"subscriber_id": subscriber.pk, "source": source or subscriber.source},
            created_at=now,
        )


def _text(tenant, subscriber, body, *, source, ref, now) -> None:
    message_create(
        tenant=tenant,
        subscriber=subscriber,
        template=as_template(body),
        kind=MessageKind.TRANSACTIONAL,
        source=source,
        dedupe_key=f"{source}:{subscriber.pk}:{ref}",
        source_ref=str(ref),
        now=now,
    )


@transaction.atomic(savepoint=False)  # nested in the caller's transaction: no savepoint
def subscriber_opt_in(
    *,
    tenant: Tenant,
    phone: str,
    evidence: Evidence,
    now: datetime,
    double_opt_in: bool = True,
    member: Member | None = None,
    send_confirmation: bool = True,
    timezone: str = "",
) -> Subscriber:
    """Start or record a subscription.

    With double opt-in (the default) the number becomes pending and gets "Reply Y to
    confirm"; it is subscribed only by that reply. Without it (consent proven elsewhere:
    checkout with the disclosure shown, an import with evidence) it is subscribed at once.
    A number that is subscribed already stays as it is.
    """
    with tenant_scope(tenant):
        settings = messaging_settings_get(tenant)
        brand = brand_name(tenant, settings)
        subscriber, _ = subscriber_get_or_create(
            tenant=tenant, phone=phone, source=evidence.source, now=now
        )
        if member is not None and subscriber.member_id != member.pk:
            subscriber.member = member
            subscriber.save(update_fields=["member", "updated_at"])
        if timezone and subscriber.timezone != timezone:
            subscriber.timezone = timezone  # a zone the subscriber told us wins over the number's
            subscriber.save(update_fields=["timezone", "updated_at"])
        if subscriber.status == SubscriberStatus.SUBSCRIBED:
            return subscriber
        if subscriber.status != SubscriberStatus.PENDING:
            subscriber.source = evidence.source
            subscriber.save(update_fields=["source", "updated_at"])
        if double_opt_in:
            text = confirm_request_text(brand, settings)
            record = _record(subscriber, ConsentAction.OPT_IN_REQUESTED, evidence, now, text)
            _set_status(subscriber, SubscriberStatus.PENDING, now)
            _text(tenant, subscriber, text, source="opt_in_request", ref=record.pk, now=now)
            return subscriber
        action = (
            ConsentAction.IMPORTED
            if evidence.source == ConsentSource.IMPORT
            else ConsentAction.OPT_IN
        )
        text = opt_in_confirmation_text(brand, settings) if send_confirmation else ""
        record = _record(subscriber, action, evidence, now, text)
        _set_status(subscriber, SubscriberStatus.SUBSCRIBED, now)
        if text:
            _text(tenant, subscriber, text, source="opt_in", ref=record.pk, now=now)
        return subscriber


@transaction.atomic(savepoint=False)  # nested in the caller's transaction: no savepoint
def subscriber_confirm(*, subscriber: Subscriber, evidence: Evidence, now: datetime) -> Subscriber:
    """The "Y" to a pending double opt-in: subscribed, with one confirmation text."""
    tenant = subscriber.tenant
    with tenant_scope(tenant):
        settings = messaging_settings_get(tenant)
        text = opt_in_confirmation_text(brand_name(tenant, settings), settings)
        record = _record(subscriber, ConsentAction.OPT_IN_CONFIRMED, evidence, now, text)
        _set_status(subscriber, SubscriberStatus.SUBSCRIBED, now)
        _text(tenant, subscriber, text, source="opt_in", ref=record.pk, now=now)
        return subscriber


@transaction.atomic(savepoint=False)  # nested in the caller's transaction: no savepoint
def subscriber_opt_out(
    *, subscriber: Subscriber, evidence: Evidence, now: datetime, confirm: bool = True
) -> Subscriber:
    """Unsubscribed at once. A text opt-out gets exactly one confirmation (FCC 12-143); an
    opt-out from a number that is unsubscribed already changes nothing and texts nothing."""
    tenant = subscriber.tenant
    with tenant_scope(tenant):
        if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
            return subscriber
        settings = messaging_settings_get(tenant)
        text = opt_out_confirmation_text(brand_name(tenant, settings)) if confirm else ""
        record = _record(subscriber, ConsentAction.OPT_OUT, evidence, now, text)
        _set_status(subscriber, SubscriberStatus.UNSUBSCRIBED, now, source=evidence.source)
        if text:
            _text(tenant, subscriber, text, source="opt_out", ref=record.pk, now=now)
        return subscriber


def help_reply(*, subscriber: Subscriber, inbound_sid: str, now: datetime) -> None:
    tenant = subscriber.tenant
    settings = messaging_settings_get(tenant)
    text = help_text(brand_name(tenant, settings), settings)
    _text(tenant, subscriber, text, source="help", ref=inbound_sid, now=now)
