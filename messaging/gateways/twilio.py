"""Twilio through its own SDK. TWILIO_API_BASE_URL points the SDK at another host (a local
server that speaks Twilio's protocol, in tests and benchmarks)."""

from __future__ import annotations

import threading
from datetime import datetime

import aiohttp
import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

# Imported up front, not on first use: the SDK loads its API modules lazily, and a first send
# in one thread would otherwise hold the import lock while other threads' sends wait behind
# it and then leave all at once, crowding one second at the carrier.
from twilio.rest.api.v2010.account import message as _message_api  # noqa: F401

from messaging.crypto import decrypt
from messaging.gateways.base import GatewayError, OutcomeUnknown, Outgoing, Sent
from messaging.models import Sender

TWILIO_HOST = "https://api.twilio.com"
# Seconds to wait for Twilio's answer; past it the outcome is unknown.
TIMEOUT = 10
VALIDITY_MAX = 36000  # Twilio's limit, seconds
CONCURRENT_REQUESTS = 100  # per account, Twilio's default limit
CONNECT_TIMEOUT = 5  # seconds to get a connection (from the pool, or a new one)

# compliance.md, Carrier errors.
OPTED_OUT = {"21610"}
INVALID_NUMBER = {"21211", "21614"}
RATE_LIMITED = {"20429"}


class RebasedHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending to TWILIO_API_BASE_URL instead of api.twilio.com.

    It ignores proxy settings from the environment: requests would otherwise scan the whole
    environment for them on every call (a sixth of a send's CPU)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.session is not None:
            self.session.trust_env = False

    def request(self, method, url, *args, **kwargs):
        base = settings.TWILIO_API_BASE_URL
        if base != TWILIO_HOST and url.startswith(TWILIO_HOST):
            url = base + url[len(TWILIO_HOST) :]
        return super().request(method, url, *args, **kwargs)


class RebasedAsyncHttpClient(AsyncTwilioHttpClient):
    """The SDK's asynchronous HTTP client (aiohttp), rebased like RebasedHttpClient. Built on
    the carrier loop (messaging.aio), which owns its connection pool."""

    def __init__(self):
        super().__init__(pool_connections=False)
        # At most Twilio's default REST concurrency per account (100 requests in flight; more
        # are refused with 20429): a 1,000 MPS sender with answers in 0.1 s.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENT_REQUESTS), trust_env=False
        )

    async def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        base = settings.TWILIO_API_BASE_URL
        if base != TWILIO_HOST and url.startswith(TWILIO_HOST):
            url = base + url[len(TWILIO_HOST) :]
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        async with self.session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            # A connection not made within CONNECT_TIMEOUT raises ConnectionTimeoutError: the
            # request never left, so the text is retried rather than left unknown.
            timeout=aiohttp.ClientTimeout(total=timeout or TIMEOUT, connect=CONNECT_TIMEOUT),
            allow_redirects=allow_redirects,
        ) as response:
            return Response(response.status, await response.text(), response.headers)


_local = threading.local()
# Asynchronous SDK clients by account, used only on the carrier loop.
_async_clients: dict[tuple, Client] = {}


def _async_client(account_sid: str, auth_token: str) -> Client:
    key = (account_sid, auth_token, settings.TWILIO_API_BASE_URL)
    client = _async_clients.get(key)
    if client is None or client.http_client.session.closed:
        client = _async_clients[key] = Client(
            account_sid, auth_token, http_client=RebasedAsyncHttpClient()
        )
    return client


def _client(account_sid: str, auth_token: str) -> Client:
    """One SDK client (and connection pool) per thread and account."""
    clients = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = {}
    key = (account_sid, auth_token, settings.TWILIO_API_BASE_URL)
    if key not in clients:
        clients[key] = Client(
            account_sid, auth_token, http_client=RebasedHttpClient(timeout=TIMEOUT)
        )
    return clients[key]


class TwilioGateway:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None,
        messaging_service_sid: str = "",
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid

    @classmethod
    def for_sender(cls, sender: Sender) -> TwilioGateway:
        return cls(
            account_sid=sender.account_sid,
            auth_token=decrypt(sender.auth_token_encrypted),
            from_number=sender.phone_number,
            messaging_service_sid=sender.messaging_service_sid,
        )

    def _params(self, message: Outgoing) -> dict:
        params: dict = {"to": message.to, "body": message.body}
        if message.status_callback:
            params["status_callback"] = message.status_callback
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_number
        if message.expires_at is not None:
            seconds = int((message.expires_at - message.now).total_seconds())
            params["validity_period"] = min(max(seconds, 1), VALIDITY_MAX)
        if message.smart_encoded:
            params["smart_encoded"] = True
        return params

    async def send_async(self, message: Outgoing) -> Sent:
        client = _async_client(self.account_sid, self.auth_token)
        try:
            created = await client.messages.create_async(**self._params(message))
        except TwilioRestException as exc:
            raise _error(exc) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection was made: the request can't have reached Twilio.
            raise GatewayError(f"Twilio unreachable: {exc}", code="connect") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OutcomeUnknown(f"No answer from Twilio: {exc!r}") from exc
        return Sent(carrier_sid=created.sid, status=created.status or "queued")

    def find(self, *, to: str, body: str, since: datetime) -> Sent | None:
        """The carrier's record of a text we sent without learning its fate (a timeout after
        the request left): the newest one to `to` with this body, created since `since`."""
        params: dict = {"to": to, "limit": 20, "page_size": 20}
        if not self.messaging_service_sid:
            params["from_"] = self.from_number
        try:
            found = _client(self.account_sid, self.auth_token).messages.list(**params)
        except (TwilioRestException, requests.RequestException) as exc:
            raise GatewayError(f"Twilio lookup failed: {exc}") from exc
        for message in found:
            created = message.date_created
            if message.body == body and (created is None or created >= since):
                return Sent(carrier_sid=message.sid, status=message.status or "queued")
        return None


def _error(exc: TwilioRestException) -> GatewayError:
    code = str(exc.code or "")
    message = f"Twilio {exc.status}: {exc.msg}"
    if code in OPTED_OUT:
        return GatewayError(message, code=code, permanent=True, opted_out=True)
    if code in INVALID_NUMBER:
        return GatewayError(message, code=code, permanent=True)
    if code in RATE_LIMITED or exc.status == 429 or exc.status >= 500:
        return GatewayError(message, code=code or str(exc.status))
    return GatewayError(message, code=code or str(exc.status), permanent=True)
