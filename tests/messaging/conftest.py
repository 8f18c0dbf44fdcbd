"""Shared fixtures of the SMS channel tests: a brand's sender and a phone that texts it
through the real, signed webhook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt
from messaging.models import OutboundMessage, Sender
from messaging.services.setup import sender_default

from ..programs.conftest import alice_api, charlie_api  # noqa: F401 - the storefront fixtures

_sids = count(1)
# testserver is Django's test client host; the webhook checks signatures against it.
BASE = "http://testserver"


def signed_post(client: Client, path: str, params: dict, token: str, *, url: str | None = None):
    signature = RequestValidator(token).compute_signature(url or BASE + path, params)
    return client.post(path, params, headers={"X-Twilio-Signature": signature})


@dataclass
class Phone:
    """A subscriber's handset texting a brand's number through /webhooks/twilio/inbound."""

    number: str
    sender: Sender
    client: Client

    @property
    def token(self) -> str:
        return decrypt(self.sender.auth_token_encrypted)

    def params(self, body: str, sid: str | None = None) -> dict:
        return {
            "MessageSid": sid or f"SM{next(_sids):032x}",
            "AccountSid": self.sender.account_sid,
            "From": self.number,
            "To": self.sender.phone_number,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }

    def text(self, body: str, sid: str | None = None):
        response = signed_post(
            self.client, "/webhooks/twilio/inbound", self.params(body, sid), self.token
        )
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/xml")
        return response

    def received(self) -> list[str]:
        with tenant_scope(self.sender.tenant):
            return list(
                OutboundMessage.objects.filter(to=self.number)
                .order_by("id")
                .values_list("body", flat=True)
            )


@pytest.fixture
def alice_sender(alice_brand) -> Sender:
    return sender_default(alice_brand.tenant)


@pytest.fixture
def charlie_sender(charlie_brand) -> Sender:
    return sender_default(charlie_brand.tenant)


@pytest.fixture
def phone(alice_sender) -> Phone:
    return Phone("+12125550101", alice_sender, Client())


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)
