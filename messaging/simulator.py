"""The phone simulator of sandbox brands: a test handset that texts the brand's sandbox
number through the real inbound webhook — signature, tenant lookup, keywords, inbox — and
reads what the sandbox "delivered" to it."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.test import RequestFactory
from twilio.request_validator import RequestValidator

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging import webhooks
from messaging.crypto import decrypt
from messaging.models import OutboundMessage, Sender, SenderKind

# Fictional numbers (555-01xx) in zones and states that show the rules at work.
TEST_NUMBERS = [
    ("+12125550142", "New York, NY"),
    ("+13055550143", "Miami, FL (texts end at 8 pm)"),
    ("+14155550144", "San Francisco, CA"),
    ("+18085550145", "Honolulu, HI"),
    # With these two, one test number is inside its sending window at any hour of the day.
    # London: libphonenumber's example mobile (the UK's fictional 07700 900xxx isn't valid to
    # it); Australia: ACMA's fictional range, only the hours legal in all its zones.
    ("+447400123456", "London, UK"),
    ("+61491570156", "Australia (any zone)"),
]
# Texted through the sandbox only, never a real carrier (messaging/services/dispatch.py).
TEST_NUMBER_SET = frozenset(number for number, _ in TEST_NUMBERS)


class NotSandbox(ValueError):
    """The simulator only texts a sandbox sender: a real number would reach a real carrier."""


def simulator_text(*, sender: Sender, from_number: str, body: str, base_url: str) -> int:
    """Text `body` from `from_number` to the sandbox sender, as Twilio would deliver it to
    {base_url}/webhooks/twilio/inbound, signed with the sender's token. The webhook's status."""
    if sender.kind != SenderKind.SANDBOX:
        raise NotSandbox("The phone simulator works with the sandbox sender only")
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": sender.account_sid,
        "From": from_number,
        "To": sender.phone_number,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    path = "/webhooks/twilio/inbound"
    parts = urlsplit(base_url)
    signature = RequestValidator(decrypt(sender.auth_token_encrypted)).compute_signature(
        base_url.rstrip("/") + path, params
    )
    request = RequestFactory().post(
        path,
        params,
        headers={"X-Twilio-Signature": signature},
        SERVER_NAME=parts.hostname or "localhost",
        SERVER_PORT=str(parts.port or (443 if parts.scheme == "https" else 80)),
        secure=parts.scheme == "https",
    )
    return webhooks.inbound(request).status_code


def simulator_thread(tenant: Tenant, number: str, limit: int = 50) -> list[OutboundMessage]:
    """What the sandbox delivered to a test number, newest last."""
    with tenant_scope(tenant):
        return list(reversed(OutboundMessage.objects.filter(to=number).order_by("-id")[:limit]))
