"""Twilio's webhooks: inbound texts and delivery receipts (api.md, Carrier webhooks).

Every request is checked with the twilio library's RequestValidator against the auth token
of the tenant it claims to be for — found from our own records (the receiving number, or our
message), never from a field the caller controls alone. A bad or missing signature is a 403
and nothing is written.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from messaging.crypto import decrypt
from messaging.models import OutboundMessage, Sender
from messaging.selectors import e164_or_none
from messaging.services.inbound import inbound_receive
from messaging.services.status import status_receive

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def public_url(request: HttpRequest) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL's origin when set (behind a proxy the request's
    own host may differ), otherwise the request's own URL."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()


def signature_valid(request: HttpRequest, sender: Sender, params: dict) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    return _validator(bytes(sender.auth_token_encrypted)).validate(
        public_url(request), params, signature
    )


@lru_cache(maxsize=256)
def _validator(auth_token_encrypted: bytes) -> RequestValidator:
    # Keyed by the stored ciphertext: a new token is a new key, so nothing stale is used.
    return RequestValidator(decrypt(auth_token_encrypted))


def _forbidden(reason: str, request: HttpRequest) -> HttpResponse:
    logger.warning("twilio webhook refused: %s (%s)", reason, request.path)
    return HttpResponse("Forbidden", status=403, content_type="text/plain")


def _e164(value: str) -> str | None:
    return e164_or_none(value, None)  # Twilio sends E.164: no region to assume


# Senders by receiving number, kept a few seconds per process: every inbound text needs one.
SENDER_TTL = 5.0
_senders_by_number: dict[str, tuple[float, Sender]] = {}


def sender_for_inbound(params: dict) -> Sender | None:
    """The sender a text was sent to: our number, or (for a Messaging Service that the number
    isn't registered with us on its own) the account's service."""
    to = _e164(params.get("To", ""))
    hit = _senders_by_number.get(to) if to else None
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    sender = _sender_for_inbound(params, to)
    if sender is not None and to and sender.phone_number == to:
        _senders_by_number[to] = (time.monotonic() + SENDER_TTL, sender)
    return sender


def _sender_for_inbound(params: dict, to: str | None) -> Sender | None:
    # WARNING: all tenants' senders; the receiving number is how an inbound text finds its
    # tenant, and the signature is then checked with that tenant's token.
    senders = Sender.objects.unscoped().select_related("tenant")
    sender = senders.filter(phone_number=to).first() if to else None
    if sender is None and params.get("MessagingServiceSid") and params.get("AccountSid"):
        sender = senders.filter(
            account_sid=params["AccountSid"],
            messaging_service_sid=params["MessagingServiceSid"],
        ).first()
    return sender


@csrf_exempt
@require_POST
def inbound(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    sender = sender_for_inbound(params)
    if sender is None:
        return _forbidden("no sender has the receiving number", request)
    if not signature_valid(request, sender, params):
        return _forbidden("bad signature", request)
    from_number = _e164(params.get("From", ""))
    if not params.get("MessageSid") or from_number is None:
        logger.warning("inbound text without MessageSid or a usable From: ignored")
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")
    params["From"] = from_number
    inbound_receive(sender=sender, params=params, now=timezone.now())
    # Replies (confirmations, HELP) go out through the dispatcher like every other text, so
    # each is recorded, paced and receipted.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def status(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    # WARNING: all tenants' messages; our own id in the (signed) URL finds the text, and
    # with it the tenant whose token must have signed the request.
    messages = OutboundMessage.objects.unscoped().select_related("tenant", "sender")
    message_id = request.GET.get("m", "")
    message = messages.filter(pk=int(message_id)).first() if message_id.isdigit() else None
    if message is None and params.get("MessageSid"):
        message = messages.filter(carrier_sid=params["MessageSid"]).first()
    if message is None or message.sender is None:
        account = params.get("AccountSid", "")
        senders = Sender.objects.unscoped().filter(account_sid=account)[:20] if account else []
        if not any(signature_valid(request, sender, params) for sender in senders):
            return _forbidden("receipt for no known text, unsigned", request)
        logger.info("receipt for unknown message %s: ignored", params.get("MessageSid"))
        return HttpResponse(status=200)
    if not signature_valid(request, message.sender, params):
        return _forbidden("bad signature", request)
    status_receive(message=message, params=params, now=timezone.now())
    return HttpResponse(status=200)
