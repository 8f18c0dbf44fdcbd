"""A local server that speaks Twilio's REST protocol for outbound Messages, plus its webhooks.

Tests and benchmarks point the Twilio SDK at ``FakeTwilio().base_url`` instead of
https://api.twilio.com (there is no internet here). It

- checks HTTP Basic auth (account SID : auth token) like Twilio, answering 401 / 20003;
- validates every ``POST .../Messages.json`` form against ``CreateMessageRequest`` from
  Twilio's published OpenAPI spec, read at run time, and records what it found wrong, so a
  test can assert ``fake.schema_violations() == []``;
- answers 201 with a Message resource shaped like the spec's ``api.v2010.account.message``,
  and serves it again at ``GET .../Messages/{Sid}.json``;
- can be programmed per recipient to fail (21610 opted out, 21211, 21614, 429, 500), to stall
  past the client's timeout, or globally to add latency;
- sends signed status callbacks (sent, then delivered / undelivered / failed), by itself or on
  demand, and signed inbound-SMS webhooks.

    with FakeTwilio() as fake:
        fake.add_account(sid, token)
        ...  # point the SDK at fake.base_url
        assert fake.schema_violations() == []

``python -m tests.fake_twilio --account SID:TOKEN`` serves it in its own process, so that a
benchmark's client threads don't share a GIL with the server.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import heapq
import hmac
import itertools
import json
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate
from functools import lru_cache, partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MESSAGE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
FORM = "application/x-www-form-urlencoded"

# Twilio's published OpenAPI document (MIT, see tests/twilio/LICENSE), kept in the repository
# so a fresh clone can check requests against it; TWILIO_OPENAPI_SPEC overrides.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent / "twilio" / "twilio_api_v2010.json"

_MESSAGES_RE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")
_MESSAGE_RE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_INTEGER = re.compile(r"[+-]?\d+")
_MAX_LINE = 65536
_MAX_HEADERS = 100

# Twilio error codes this fake answers with, and their documented titles.
ERROR_TITLES = {
    20001: "Unknown parameter",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "Invalid 'To' Phone Number",
    21212: "Invalid 'From' Phone Number",
    21602: "Message body is required",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required",
    21604: "A 'To' phone number is required",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit",
    21620: "Invalid media URL(s)",
    21623: "Number of media files exceeds allowed limit",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Carrier violation",
    30008: "Unknown error",
    90007: "Invalid validity period value",
}
GENERIC_INVALID = 20001  # no narrower documented code: unknown, repeated or mistyped parameter
# A bad value of these parameters has its own code; any other parameter gets GENERIC_INVALID.
_PARAM_ERROR_CODES = {
    "To": 21211,
    "From": 21212,
    "StatusCallback": 21609,
    "MediaUrl": 21620,
    "ValidityPeriod": 90007,
    "Body": 21617,
}
# When a request has several problems, Twilio reports one; the recipient comes first.
_CODE_PRIORITY = (21604, 21211, 21603, 21212, 21602, 21617)

# Programmable outcomes per recipient: kind -> (HTTP status, Twilio code).
BEHAVIOURS: dict[str, tuple[int, int] | None] = {
    "ok": None,
    "opted_out": (400, 21610),
    "invalid_number": (400, 21211),
    "not_mobile": (400, 21614),
    "rate_limited": (429, 20429),
    "server_error": (500, 20500),
    "timeout": None,  # handled apart: the message is created, the answer comes too late
}
FINAL_STATUSES = {"delivered": None, "undelivered": 30003, "failed": 30008}


def error_body(code: int, status: int, message: str | None = None) -> dict:
    """Twilio's 2010-04-01 error document."""
    return {
        "code": code,
        "message": message or ERROR_TITLES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# --- the spec ------------------------------------------------------------------------------


def spec_path() -> Path:
    return Path(os.environ.get("TWILIO_OPENAPI_SPEC") or DEFAULT_SPEC_PATH)


@lru_cache(maxsize=4)
def load_spec(path: str | None = None) -> dict:
    """Twilio's OpenAPI document for api.twilio.com/2010-04-01, parsed once per process."""
    with open(path or spec_path(), encoding="utf-8") as f:
        return json.load(f)


def resolve_ref(spec: dict, node: dict) -> dict:
    """Follows a local ``$ref`` ("#/components/schemas/...") to the schema it names."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def create_message_request_schema(spec: dict) -> dict:
    post = spec["paths"][MESSAGES_PATH]["post"]
    return post["requestBody"]["content"][FORM]["schema"]


def message_schema_ref(spec: dict) -> str:
    """The ``$ref`` of the 201 response to a Message create (api.v2010.account.message)."""
    created = spec["paths"][MESSAGES_PATH]["post"]["responses"]["201"]
    return created["content"]["application/json"]["schema"]["$ref"]


# --- validating a create-message form --------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    param: str
    code: int
    message: str


@dataclass(frozen=True)
class _Prop:
    """One property of CreateMessageRequest, with its $refs resolved and pattern compiled."""

    name: str
    type: str
    enum: frozenset[str] | None
    pattern: re.Pattern | None
    min_length: int | None
    max_length: int | None
    format: str | None
    items: _Prop | None


def _compile_prop(spec: dict, name: str, node: dict) -> _Prop:
    node = resolve_ref(spec, node)
    pattern = node.get("pattern")
    if pattern and pattern.endswith("$"):
        # Python's $ also matches before a trailing newline; the spec means end of string.
        pattern = pattern[:-1] + r"\Z"
    return _Prop(
        name=name,
        type=node.get("type", "string"),
        enum=frozenset(node["enum"]) if "enum" in node else None,
        pattern=re.compile(pattern) if pattern else None,
        min_length=node.get("minLength"),
        max_length=node.get("maxLength"),
        format=node.get("format"),
        items=_compile_prop(spec, name, node["items"]) if "items" in node else None,
    )


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    host = parts.hostname or ""
    # Twilio: "URL must contain a valid hostname and underscores are not allowed".
    return parts.scheme in ("http", "https") and bool(host) and "_" not in host and " " not in value


class CreateMessageValidator:
    """Checks a Messages.json form against the spec's CreateMessageRequest schema.

    The schema gives the parameter names, types, enums, patterns and formats; the rules the
    spec only states in prose (ValidityPeriod 1..36000, Body <= 1600 characters, at most 10
    MediaUrl, one of Body/MediaUrl/ContentSid) are added here. Form values are strings, so a
    typed parameter passes when its string parses as that type.
    """

    # E.164 for the numbers this project sends with; the spec also allows channel addresses
    # (whatsapp:+1...), short codes and alphanumeric sender IDs, which it never uses.
    E164_PARAMS = frozenset({"To", "From"})
    MAX_BODY = 1600
    VALIDITY_RANGE = (1, 36000)
    MAX_MEDIA = 10

    def __init__(self, spec: dict):
        schema = create_message_request_schema(spec)
        self.required = tuple(schema.get("required", ()))
        self.props = {
            name: _compile_prop(spec, name, p) for name, p in schema["properties"].items()
        }

    def validate(
        self, form: dict[str, list[str]]
    ) -> tuple[dict[str, str | list[str]], list[Violation]]:
        """Returns the params (a list for array parameters, else a string) and what is wrong."""
        params: dict[str, str | list[str]] = {}
        errors: list[Violation] = []
        for name, values in form.items():
            prop = self.props.get(name)
            if prop is None:
                errors.append(Violation(name, GENERIC_INVALID, f"Unknown parameter {name!r}"))
                params[name] = values if len(values) > 1 else values[0]
                continue
            if prop.type == "array":
                params[name] = values
                for value in values:
                    self._check(errors, prop.items or prop, value)
                continue
            params[name] = values[0]
            if len(values) > 1:
                errors.append(Violation(name, GENERIC_INVALID, f"{name} given {len(values)} times"))
            self._check(errors, prop, values[0])
        self._check_rules(errors, params)
        errors.sort(key=_priority)
        return params, errors

    def _check(self, errors: list[Violation], prop: _Prop, value: str) -> None:
        problem = self._problem(prop, value)
        if problem:
            code = _PARAM_ERROR_CODES.get(prop.name, GENERIC_INVALID)
            errors.append(Violation(prop.name, code, f"{prop.name} {value!r}: {problem}"))

    def _problem(self, prop: _Prop, value: str) -> str | None:
        kind = prop.type
        if kind == "integer" and not _INTEGER.fullmatch(value):
            return "not an integer"
        if kind == "number":
            try:
                if not math.isfinite(float(value)):
                    return "not a finite number"
            except ValueError:
                return "not a number"
        if kind == "boolean" and value.lower() not in ("true", "false"):
            return "not a boolean (true/false)"
        if prop.enum is not None and value not in prop.enum:
            return f"not one of {sorted(prop.enum)}"
        if prop.min_length is not None and len(value) < prop.min_length:
            return f"shorter than {prop.min_length} characters"
        if prop.max_length is not None and len(value) > prop.max_length:
            return f"longer than {prop.max_length} characters"
        if prop.pattern is not None and not prop.pattern.search(value):
            return f"does not match {prop.pattern.pattern}"
        fmt = prop.format
        if fmt == "uri" and not _is_http_url(value):
            return "not an absolute http(s) URL"
        if fmt == "phone-number":
            if prop.name in self.E164_PARAMS and not _E164.fullmatch(value):
                return "not an E.164 phone number"
            if not value:
                return "empty"
        if fmt == "date-time":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return "not an ISO 8601 date-time"
        return None

    def _check_rules(self, errors: list[Violation], params: dict) -> None:
        for name in self.required:
            if name not in params:
                code = 21604 if name == "To" else GENERIC_INVALID
                errors.append(Violation(name, code, f"Missing required parameter {name}"))
        has_from, has_service = "From" in params, "MessagingServiceSid" in params
        if not has_from and not has_service:
            errors.append(Violation("From", 21603, ERROR_TITLES[21603]))
        elif has_from and has_service:
            # Twilio itself accepts both (From then picks a sender of the service's pool);
            # the project sends exactly one, so two means a bug in how it builds requests.
            errors.append(
                Violation(
                    "From", GENERIC_INVALID, "Give exactly one of From and MessagingServiceSid"
                )
            )
        body = params.get("Body")
        if not body and "MediaUrl" not in params and "ContentSid" not in params:
            errors.append(Violation("Body", 21602, ERROR_TITLES[21602]))
        if isinstance(body, str) and len(body) > self.MAX_BODY:
            errors.append(Violation("Body", 21617, f"Body has {len(body)} characters (max 1600)"))
        validity = params.get("ValidityPeriod")
        if isinstance(validity, str) and _INTEGER.fullmatch(validity):
            low, high = self.VALIDITY_RANGE
            if not low <= int(validity) <= high:
                errors.append(
                    Violation("ValidityPeriod", 90007, f"ValidityPeriod {validity} not in 1..36000")
                )
        media = params.get("MediaUrl")
        if isinstance(media, list) and len(media) > self.MAX_MEDIA:
            errors.append(Violation("MediaUrl", 21623, f"{len(media)} MediaUrl (max 10)"))


def _priority(violation: Violation) -> int:
    code = violation.code
    return _CODE_PRIORITY.index(code) if code in _CODE_PRIORITY else len(_CODE_PRIORITY)


# --- segments (only for the num_segments field of the resource) -------------------------------

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[]~|€")


def num_segments(body: str) -> int:
    """Segments Twilio would bill: 160/153 GSM-7 septets, else 70/67 UTF-16 units. A plain
    count (no greedy packing): the fake only needs a plausible value."""
    if all(c in _GSM7 or c in _GSM7_EXTENSION for c in body):
        units = len(body) + sum(c in _GSM7_EXTENSION for c in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def _rfc2822_now() -> str:
    return _rfc2822(int(time.time()))


# Formatting a date costs more than the rest of a small request; one per second will do.
@lru_cache(maxsize=2)
def _rfc2822(second: int) -> str:
    # The format of the spec's examples: "Thu, 24 Aug 2023 05:01:45 +0000".
    return format_datetime(datetime.fromtimestamp(second, UTC))


@lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


# --- records -------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    """One request the fake received, recorded on arrival."""

    method: str
    path: str
    account_sid: str | None  # the account in the URL
    params: dict[str, str | list[str]]
    headers: dict[str, str]
    received_monotonic: float  # time.monotonic() at receipt
    received_at: datetime  # wall clock (UTC) at receipt
    schema_errors: list[str] = field(default_factory=list)
    response_status: int | None = None  # set before the answer is written
    error_code: int | None = None
    message_sid: str | None = None


@dataclass
class CallbackAttempt:
    """A webhook the fake sent (status callback or inbound SMS)."""

    url: str
    params: dict[str, str]
    signature: str
    status_code: int | None  # None when no HTTP answer came (refused, timed out)
    body: str
    error: str | None
    sent_monotonic: float


# --- the server ------------------------------------------------------------------------------


class _Scheduler:
    """Runs callables after a delay on a few daemon threads (the status-callback lifecycle)."""

    def __init__(self, workers: int):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()  # ties never compare the callables
        self._cond = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"fake-twilio-callbacks-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
                if self._heap:
                    self._cond.notify()  # another worker may take the next one meanwhile
            try:
                fn()
            except Exception:  # noqa: S112 - a failing callback must not kill the worker
                continue


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a benchmark opens many keep-alive connections at once
    reuse_port = False

    def server_bind(self):
        if self.reuse_port:  # several processes serve one port; the kernel spreads connections
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def handle_error(self, request, client_address):
        # A client that gave up (the "timeout" behaviour) or hung up is not an error here.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive (every answer has a Content-Length); no Nagle delay
    # between our writes and the client's next request.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeTwilio/1.0"
    fake: FakeTwilio  # set on the per-instance subclass

    def setup(self):
        super().setup()
        self.fake._track_connection(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.fake._track_connection(self.connection, add=False)

    def log_message(self, format, *args):
        pass  # one stderr line per request would dominate a benchmark

    def handle_one_request(self):
        """Reads one request and hands it to the fake.

        Replaces the stock parse_request, whose email-package header parsing was about a third
        of the server's time per request; clients here are HTTP/1.x libraries, so a plain
        line split is enough. ``headers`` maps lower-cased names to values.
        """
        try:
            line = self.rfile.readline(_MAX_LINE + 1)
            if not line:
                self.close_connection = True
                return
            parts = line.decode("latin-1").split()
            items = self._read_header_lines()
            if len(line) > _MAX_LINE or len(parts) != 3 or items is None:
                self.close_connection = True
                self.fake._write(self, 400, error_body(GENERIC_INVALID, 400, "Bad Request"))
                return
            self.command, self.path, self.request_version = parts
            self.header_items = items
            self.headers = {name.lower(): value for name, value in items}
            length = self.headers.get("content-length", "0")
            if "transfer-encoding" in self.headers or not length.isdigit():
                # Chunked bodies are not supported; the HTTP clients here send a length.
                self.close_connection = True
                self.fake._write(self, 400, error_body(GENERIC_INVALID, 400, "Bad Request"))
                return
            connection = self.headers.get("connection", "").lower()
            self.close_connection = connection == "close" or (
                self.request_version != "HTTP/1.1" and connection != "keep-alive"
            )
            self.fake._dispatch(self)
        except TimeoutError:
            self.close_connection = True

    def _read_header_lines(self) -> list[tuple[str, str]] | None:
        items = []
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return items
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or len(line) > _MAX_LINE or len(items) >= _MAX_HEADERS:
                return None
            items.append((name.strip(), value.strip()))


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1, for tests and benchmarks. See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        spec_file: str | os.PathLike | None = None,
        callback_workers: int = 4,
        reuse_port: bool = False,
    ):
        self.validator = CreateMessageValidator(load_spec(str(spec_file) if spec_file else None))
        # Knobs a test may set at any time.
        self.latency = 0.0  # seconds to wait before every answer
        self.timeout_delay = 5.0  # how long the "timeout" behaviour stalls its answer
        self.auto_callbacks = False  # run each message through sent -> delivered by itself
        self.callback_delay = 0.05  # seconds before each automatic status step
        self.callback_timeout = 5.0  # seconds the fake waits for a webhook's answer
        self.service_sender = "+15005550006"  # the From a Messaging Service "picks"

        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        self._requests: list[ReceivedRequest] = []
        self._messages: list[dict] = []
        self._by_sid: dict[str, dict] = {}
        self._status_callbacks: dict[str, str] = {}  # message sid -> StatusCallback URL
        self._behaviours: dict[str, str] = {}
        self._fail_next: dict[str, deque[tuple[int, int, str | None]]] = defaultdict(deque)
        self._final_status: dict[str, tuple[str, int | None]] = {}
        self._callbacks: list[CallbackAttempt] = []
        self._callbacks_changed = threading.Condition(self._lock)
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # TCP connections accepted: shows keep-alive at work
        self._local = threading.local()  # one requests.Session per webhook-sending thread
        self._stopping = threading.Event()

        handler = type("FakeTwilioHandler", (_Handler,), {"fake": self})
        server = type("FakeTwilioServer", (_Server,), {"reuse_port": reuse_port})
        self._server = server((host, port), handler)
        self._scheduler = _Scheduler(callback_workers)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
            daemon=True,
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"

    # -- lifecycle

    def __enter__(self) -> FakeTwilio:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops serving, drops open keep-alive connections and pending callbacks."""
        if self._stopping.is_set():
            return
        self._stopping.set()  # wakes handlers sleeping in latency / timeout
        self._scheduler.stop()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forgets requests, messages, callbacks and programmed behaviours (not accounts)."""
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._by_sid.clear()
            self._status_callbacks.clear()
            self._behaviours.clear()
            self._fail_next.clear()
            self._final_status.clear()
            self._callbacks.clear()

    # -- configuration

    def add_account(self, account_sid: str, auth_token: str) -> None:
        with self._lock:
            self._accounts[account_sid] = auth_token

    def fail_next(self, to: str, code: int, status: int = 400, message: str | None = None) -> None:
        """The next create for ``to`` fails with this Twilio error (calls queue up)."""
        with self._lock:
            self._fail_next[to].append((status, code, message))

    def set_behaviour(self, to: str, kind: str) -> None:
        """Every create for ``to`` behaves as ``kind`` (see BEHAVIOURS) until changed."""
        if kind not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {kind!r}; one of {sorted(BEHAVIOURS)}")
        with self._lock:
            if kind == "ok":
                self._behaviours.pop(to, None)
            else:
                self._behaviours[to] = kind

    def set_final_status(self, to: str, status: str, error_code: int | None = None) -> None:
        """How automatic status callbacks end for ``to``: delivered, undelivered or failed."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"final status must be one of {sorted(FINAL_STATUSES)}")
        with self._lock:
            self._final_status[to] = (status, error_code or FINAL_STATUSES[status])

    # -- what happened

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received, in order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[dict]:
        """Every message created, in order, as the API shows it now (copies)."""
        with self._lock:
            return [dict(m) for m in self._messages]

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """Every webhook sent (status callbacks and inbound messages), in order."""
        with self._lock:
            return list(self._callbacks)

    def sent_to(self, number: str) -> list[dict]:
        return [m for m in self.messages if m["to"] == number]

    def get_message(self, sid: str) -> dict | None:
        with self._lock:
            message = self._by_sid.get(sid)
            return dict(message) if message else None

    def schema_violations(self) -> list[str]:
        """What was wrong with every request so far; a test asserts this is empty."""
        with self._lock:
            return [
                f"{r.method} {r.path}: {error}" for r in self._requests for error in r.schema_errors
            ]

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[CallbackAttempt]:
        """Blocks until at least ``count`` webhooks were sent (or timeout); returns them all."""
        deadline = time.monotonic() + timeout
        with self._callbacks_changed:
            while len(self._callbacks) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._callbacks_changed.wait(left)
            return list(self._callbacks)

    # -- webhooks the fake sends

    def send_status_callback(
        self, message_sid: str, status: str, error_code: int | None = None, url: str | None = None
    ) -> tuple[int | None, str]:
        """Moves the message to ``status`` and posts Twilio's status callback for it now, to
        ``url`` or the message's StatusCallback. Returns (HTTP status, body), or (None, the
        error) when no answer came."""
        with self._lock:
            url = url or self._status_callbacks.get(message_sid)
        if not url:
            raise ValueError(f"message {message_sid} has no StatusCallback; pass url=")
        attempt = self._status_step(message_sid, status, error_code, url)
        return attempt.status_code, attempt.body if attempt.error is None else attempt.error

    def send_inbound(self, url: str, auth_token: str, params: dict[str, str]) -> tuple[int, str]:
        """Posts a signed inbound-SMS webhook like Twilio's (From, To, Body are the caller's;
        the rest defaults). Returns (HTTP status, body); raises if no answer came."""
        sid = "SM" + uuid.uuid4().hex
        full = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self._account_for_token(auth_token),
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
            **params,
        }
        attempt = self._post_webhook(url, full, auth_token)
        if attempt.status_code is None:
            raise ConnectionError(f"inbound webhook to {url} got no answer: {attempt.error}")
        return attempt.status_code, attempt.body

    # -- request handling (runs on the server's handler threads)

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self.connections_opened += 1
            else:
                self._connections.discard(conn)

    def _dispatch(self, handler: _Handler) -> None:
        received_monotonic = time.monotonic()
        received_at = datetime.now(UTC)
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        method = handler.command
        record = ReceivedRequest(
            method=method,
            path=path,
            account_sid=None,
            params={},
            headers=dict(handler.header_items),
            received_monotonic=received_monotonic,
            received_at=received_at,
        )
        with self._lock:
            self._requests.append(record)

        status, payload, delay = self._answer(handler, record, method, path, raw)
        record.response_status = status
        if status >= 400:
            record.error_code = payload.get("code")
        delay += self.latency
        if delay > 0:
            self._stopping.wait(delay)
        self._write(handler, status, payload)

    def _answer(
        self, handler: _Handler, record: ReceivedRequest, method: str, path: str, raw: bytes
    ) -> tuple[int, dict, float]:
        """Decides the answer: (HTTP status, JSON document, extra seconds to stall)."""
        create = _MESSAGES_RE.fullmatch(path)
        fetch = None if create else _MESSAGE_RE.fullmatch(path)
        if not create and not fetch:
            return 404, error_body(20404, 404), 0.0
        record.account_sid = (create or fetch).group(1)
        if not self._authenticated(handler.headers.get("authorization"), record.account_sid):
            if create:
                form = _parse_form(raw.decode("utf-8", "replace"))
                record.params = {k: v if len(v) > 1 else v[0] for k, v in form.items()}
            return 401, error_body(20003, 401), 0.0
        if fetch:
            if method != "GET":
                return 405, error_body(20004, 405, "Method not allowed"), 0.0
            message = self.get_message(fetch.group(2))
            if message is None or message["account_sid"] != record.account_sid:
                return 404, error_body(20404, 404), 0.0
            return 200, message, 0.0
        if method == "GET":
            return 200, self._list(record.account_sid, handler.path), 0.0
        if method != "POST":
            return 405, error_body(20004, 405, "Method not allowed"), 0.0
        return self._create(handler, record, raw)

    def _list(self, account_sid: str, full_path: str) -> dict:
        """GET …/Messages.json?To=&From=&PageSize=: the account's messages, newest first, in
        Twilio's page format (one page: enough for the reconciliation it serves)."""
        query = parse_qs(full_path.split("?", 1)[1]) if "?" in full_path else {}
        to = query.get("To", [None])[0]
        sender = query.get("From", [None])[0]
        size = int(query.get("PageSize", ["50"])[0])
        with self._lock:
            found = [
                m
                for m in reversed(self._messages)
                if m["account_sid"] == account_sid
                and (to is None or m["to"] == to)
                and (sender is None or m["from"] == sender)
            ][:size]
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages.json?PageSize={size}&Page=0"
        return {
            "messages": found,
            "end": max(len(found) - 1, 0),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def _create(
        self, handler: _Handler, record: ReceivedRequest, raw: bytes
    ) -> tuple[int, dict, float]:
        content_type = (handler.headers.get("content-type") or "").split(";", 1)[0].strip()
        if content_type != FORM:
            problem = f"Content-Type must be {FORM}, got {content_type or 'none'!r}"
            record.schema_errors.append(problem)
            return 400, error_body(GENERIC_INVALID, 400, problem), 0.0
        try:
            form = _parse_form(raw.decode("utf-8"))
        except UnicodeDecodeError:
            record.schema_errors.append("body is not UTF-8")
            return 400, error_body(GENERIC_INVALID, 400, "body is not UTF-8"), 0.0
        params, violations = self.validator.validate(form)
        record.params = params
        if violations:
            record.schema_errors.extend(v.message for v in violations)
            first = violations[0]
            return 400, error_body(first.code, 400, first.message), 0.0

        to = params["To"]
        with self._lock:
            queued = self._fail_next.get(to)
            failure = queued.popleft() if queued else None
            kind = self._behaviours.get(to)
        if failure:
            status, code, message = failure
            return status, error_body(code, status, message), 0.0
        if kind and kind != "timeout":
            status, code = BEHAVIOURS[kind]
            return status, error_body(code, status), 0.0

        message = self._store_message(record.account_sid, params)
        record.message_sid = message["sid"]
        # "timeout": Twilio took the message but the answer comes after the client gave up,
        # so the sender can't know whether it went out.
        return 201, message, self.timeout_delay if kind == "timeout" else 0.0

    def _authenticated(self, header: str | None, account_sid: str) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        token = self._accounts.get(user)
        return (
            token is not None
            and user == account_sid
            and hmac.compare_digest(token.encode(), password.encode())
        )

    def _store_message(self, account_sid: str, params: dict) -> dict:
        sid = "SM" + os.urandom(16).hex()
        now = _rfc2822_now()
        service = params.get("MessagingServiceSid")
        body = params.get("Body", "")
        media = params.get("MediaUrl", [])
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}"
        status = "accepted" if service else "queued"
        if params.get("ScheduleType") == "fixed":
            status = "scheduled"
        message = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": params.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            # Twilio: "for messages sent via a Messaging Service, num_segments is initially 0".
            "num_segments": "0" if service else str(num_segments(body)),
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": params["To"],
            "uri": f"{uri}.json",
        }
        callback = params.get("StatusCallback")
        with self._lock:
            self._messages.append(message)
            self._by_sid[sid] = message
            if callback:
                self._status_callbacks[sid] = callback
            final = self._final_status.get(params["To"], ("delivered", None))
        if self.auto_callbacks and status != "scheduled":
            # A failed message never left Twilio, so it gets no "sent" before "failed".
            steps = [final] if final[0] == "failed" else [("sent", None), final]
            self._scheduler.call_later(self.callback_delay, partial(self._run_steps, sid, steps))
        return dict(message)

    @staticmethod
    def _write(handler: _Handler, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        reason = handler.responses.get(status, ("",))[0]
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Date: {_http_date(int(time.time()))}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"Twilio-Request-Id: RQ{os.urandom(16).hex()}",
        ]
        if status == 401:
            lines.append('WWW-Authenticate: Basic realm="Twilio API"')
        if handler.close_connection:
            lines.append("Connection: close")
        # Head and body in one write: one segment per answer, and no Nagle/delayed-ACK stall.
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    # -- status lifecycle and webhooks (scheduler threads)

    def _run_steps(self, sid: str, steps: list[tuple[str, int | None]]) -> None:
        status, error_code = steps[0]
        with self._lock:
            url = self._status_callbacks.get(sid)
        if url:
            self._status_step(sid, status, error_code, url)
        else:
            self._update_status(sid, status, error_code)
        if len(steps) > 1 and not self._stopping.is_set():
            # The next step is scheduled only now, so callbacks for one message stay in order.
            self._scheduler.call_later(
                self.callback_delay, partial(self._run_steps, sid, steps[1:])
            )

    def _update_status(self, sid: str, status: str, error_code: int | None) -> dict:
        now = _rfc2822_now()
        with self._lock:
            message = self._by_sid.get(sid)
            if message is None:
                raise KeyError(f"no message {sid}")
            message["status"] = status
            message["date_updated"] = now
            if status in ("sent", "delivered", "undelivered") and message["date_sent"] is None:
                message["date_sent"] = now
            if message["from"] is None and status != "failed":
                message["from"] = self.service_sender
            if message["num_segments"] == "0":
                message["num_segments"] = str(num_segments(message["body"] or ""))
            if error_code is not None:
                message["error_code"] = error_code
                message["error_message"] = ERROR_TITLES.get(error_code)
            return dict(message)

    def _status_step(
        self, sid: str, status: str, error_code: int | None, url: str
    ) -> CallbackAttempt:
        message = self._update_status(sid, status, error_code)
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": message["account_sid"],
            "From": message["from"] or "",
            "To": message["to"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": API_VERSION,
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        with self._lock:
            token = self._accounts.get(message["account_sid"], "")
        return self._post_webhook(url, params, token)

    def _post_webhook(self, url: str, params: dict[str, str], auth_token: str) -> CallbackAttempt:
        signature = RequestValidator(auth_token).compute_signature(url, params)
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
        }
        started = time.monotonic()
        try:
            response = session.post(
                url,
                data=params,
                headers=headers,
                timeout=self.callback_timeout,
                allow_redirects=False,
            )
            attempt = CallbackAttempt(
                url, params, signature, response.status_code, response.text, None, started
            )
        except requests.RequestException as exc:
            attempt = CallbackAttempt(url, params, signature, None, "", repr(exc), started)
        with self._callbacks_changed:
            self._callbacks.append(attempt)
            self._callbacks_changed.notify_all()
        return attempt

    def _account_for_token(self, auth_token: str) -> str:
        with self._lock:
            for sid, token in self._accounts.items():
                if token == auth_token:
                    return sid
        return "AC" + "0" * 32


def _parse_form(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Twilio Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--account", action="append", default=[], metavar="SID:TOKEN", help="repeatable"
    )
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeTwilio(host=args.host, port=args.port)
    fake.latency = args.latency
    for account in args.account:
        sid, _, token = account.partition(":")
        fake.add_account(sid, token)
    print(fake.base_url, flush=True)  # a parent process reads the URL from here
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
