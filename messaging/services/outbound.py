"""Creating texts: personalization, tracked links, opt-out footer, encoding and price, once
per dedupe key."""

from __future__ import annotations

import logging
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.urls import reverse

from loyaltysms.db import insert_unless_exists
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging import encoding, rendering
from messaging.models import (
    MessageKind,
    MessageStatus,
    MessagingSettings,
    OutboundMessage,
    ShortLink,
    Subscriber,
)
from messaging.services.setup import brand_name, messaging_settings_get, sender_default

logger = logging.getLogger(__name__)

CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 7  # 62^7 ≈ 3.5e12 codes: guessing one is hopeless


class BodyInvalid(ValueError):
    """A template the channel can't send; the message says why."""


@dataclass(frozen=True)
class Rendered:
    text: str
    info: encoding.SegmentInfo


def public_base_url() -> str:
    return django_settings.PUBLIC_BASE_URL or f"http://localhost:{django_settings.PORT}"


def short_url(code: str) -> str:
    return public_base_url() + reverse("short_link", args=[code])


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def compose(
    template: str,
    *,
    values: dict,
    kind: str,
    settings: MessagingSettings,
    shorten=None,
    smart_encoding: bool | None = None,
) -> Rendered:
    """The text one recipient gets: tags filled, URLs shortened (marketing), footer added
    (marketing), look-alikes replaced when smart encoding is on; counted as Twilio counts."""
    text = rendering.render(template, values)
    if kind == MessageKind.MARKETING:
        if shorten is not None:
            text = rendering.replace_urls(text, shorten)
        if settings.opt_out_footer:
            text = rendering.with_footer(text, settings.footer_text)
    if settings.smart_encoding if smart_encoding is None else smart_encoding:
        text = encoding.smart_encode(text)
    return Rendered(text=text, info=encoding.segment_info(text))


def check_template(template: str) -> None:
    unknown = rendering.unknown_tags(template)
    if unknown:
        raise BodyInvalid(
            f"Unknown tag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known tags: "
            + ", ".join("{" + tag + "}" for tag in rendering.TAGS)
            + ", {link:https://…}"
        )
    if not template.strip():
        raise BodyInvalid("The message is empty")


def message_create(
    *,
    tenant: Tenant,
    subscriber: Subscriber,
    template: str,
    kind: str,
    source: str,
    dedupe_key: str,
    now: datetime,
    values: dict | None = None,
    send_after: datetime | None = None,
    expires_at: datetime | None = None,
    source_ref: str = "",
) -> tuple[OutboundMessage, bool]:
    """Queue one text, exactly once per dedupe key: the same key again returns the first
    message and False. Consent, quiet hours and caps are checked when it is dispatched."""
    check_template(template)
    with tenant_scope(tenant):
        existing = OutboundMessage.objects.filter(dedupe_key=dedupe_key).first()
        if existing is not None:
            return existing, False
        settings = messaging_settings_get(tenant)
        links: list[ShortLink] = []

        def shorten(url: str) -> str:
            link = ShortLink(
                tenant=tenant,
                code=new_code(),
                target=url,
                subscriber=subscriber,
                message_dedupe_key=dedupe_key,
                created_at=now,
            )
            links.append(link)
            return short_url(link.code)

        merged = {"brand": brand_name(tenant, settings), **(values or {})}
        rendered = compose(template, values=merged, kind=kind, settings=settings, shorten=shorten)
        if rendered.info.characters > encoding.MAX_BODY_CHARACTERS:
            raise BodyInvalid(
                f"The text is {rendered.info.characters} characters after personalization; "
                f"the carrier takes at most {encoding.MAX_BODY_CHARACTERS}"
            )
        message = OutboundMessage(
            tenant=tenant,
            subscriber=subscriber,
            sender=sender_default(tenant),
            to=subscriber.e164,
            kind=kind,
            source=source,
            source_ref=source_ref,
            dedupe_key=dedupe_key,
            body=rendered.text,
            encoding=rendered.info.encoding,
            segments=rendered.info.segments,
            price_estimate=settings.price_per_segment * Decimal(rendered.info.segments),
            status=MessageStatus.QUEUED,
            send_after=send_after or now,
            expires_at=expires_at,
            created_at=now,
        )
        with transaction.atomic(savepoint=False):  # ON CONFLICT needs no savepoint
            created = insert_unless_exists(message, conflict=("tenant", "dedupe_key"))
            if not created:
                return OutboundMessage.objects.get(dedupe_key=dedupe_key), False
            if links:
                ShortLink.objects.bulk_create(links)
        dispatch_soon()
        return message, True


# Wake-ups are cheap to skip and dear to send (a broker message, ~1-2 ms of CPU): each
# process sends at most one per WAKE_INTERVAL. A text queued within the interval after a
# wake-up gets one more at the interval's end (the dispatcher run woken earlier may have
# looked already), so a text waits at most WAKE_INTERVAL for its wake-up, and beat's run
# every few seconds catches whatever a process that died in between left.
WAKE_INTERVAL = 0.5
_wake_lock = threading.Lock()
_last_wake = -WAKE_INTERVAL
_wake_scheduled = False


def _publish_wake() -> None:
    from messaging.tasks import dispatch_due

    dispatch_due.delay()


def _wake_dispatcher() -> None:
    global _last_wake, _wake_scheduled
    with _wake_lock:
        if _wake_scheduled:
            return  # the one at the interval's end covers this text too
        wait = _last_wake + WAKE_INTERVAL - time.monotonic()
        if wait > 0:
            _wake_scheduled = True
            timer = threading.Timer(wait, _wake_later)
            timer.daemon = True
            timer.start()
            return
        _last_wake = time.monotonic()
    try:
        _publish_wake()
    except Exception as exc:
        # Runs after the commit: the texts are in PostgreSQL, and beat's periodic dispatcher
        # run sends them once the broker is back. An unreachable broker must not turn the
        # request (or task) that queued them into an error after the fact.
        logger.warning("dispatcher wake-up not published", extra={"error": str(exc)})


def _wake_later() -> None:
    global _last_wake, _wake_scheduled
    with _wake_lock:
        _wake_scheduled = False
        _last_wake = time.monotonic()
    try:
        _publish_wake()
    except Exception:  # no request to fail here; beat's periodic run sends the text
        logger.exception("dispatcher wake-up not published")


def dispatch_soon() -> None:
    """Wake the dispatcher once the transaction commits: one wake-up per transaction however
    many texts it queued, and at most one per WAKE_INTERVAL per process (the periodic
    dispatcher run catches anything missed)."""
    if any(entry[1] is _wake_dispatcher for entry in connection.run_on_commit):
        return
    transaction.on_commit(_wake_dispatcher)
