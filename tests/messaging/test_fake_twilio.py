"""The fake Twilio server (tests/fake_twilio.py) against the real Twilio SDK and Twilio's spec.

Other tests trust the fake to reject what Twilio would reject and to answer as Twilio does,
so this checks it with the SDK itself and with jsonschema on the published OpenAPI document.
No database.
"""

from __future__ import annotations

import base64
import copy
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fake_twilio import FakeTwilio, load_spec, message_schema_ref

SID = "AC" + "a1" * 16
TOKEN = "f" * 32
OTHER_SID = "AC" + "b2" * 16
OTHER_TOKEN = "e" * 32
SERVICE = "MG" + "c3" * 16
FROM = "+15005550006"
TO = "+14155552671"
TWILIO_API = "https://api.twilio.com"


class LocalTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sent to the fake instead of api.twilio.com."""

    def __init__(self, base_url: str, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


def sdk_client(fake: FakeTwilio, sid=SID, token=TOKEN, timeout=None) -> Client:
    return Client(sid, token, http_client=LocalTwilioHttpClient(fake.base_url, timeout=timeout))


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        server.add_account(SID, TOKEN)
        server.add_account(OTHER_SID, OTHER_TOKEN)
        yield server


def post_message(fake: FakeTwilio, data, sid=SID, token=TOKEN) -> requests.Response:
    """A raw create, for what the SDK would never send."""
    return requests.post(
        f"{fake.base_url}/2010-04-01/Accounts/{sid}/Messages.json",
        data=data,
        auth=(sid, token),
        timeout=5,
    )


# --- Twilio's response schema, as JSON Schema -------------------------------------------------

_OPENAPI_ONLY = {"nullable", "x-twilio", "description", "example", "examples"}


def _to_json_schema(node, in_properties=False):
    """OpenAPI 3.0 -> JSON Schema: ``nullable: true`` becomes a type that also admits null."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # keys are property names here, not keywords
        return {name: _to_json_schema(sub) for name, sub in node.items()}
    out = {
        key: _to_json_schema(value, in_properties=key == "properties")
        for key, value in node.items()
        if key not in _OPENAPI_ONLY
    }
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@pytest.fixture(scope="module")
def message_validator():
    spec = load_spec()
    name = message_schema_ref(spec).rsplit("/", 1)[1]
    schemas = _to_json_schema(copy.deepcopy(spec["components"]["schemas"]))
    # Strict: the fake must return every field the spec lists and nothing it doesn't.
    message = schemas[name]
    message["required"] = sorted(message["properties"])
    message["additionalProperties"] = False
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time-rfc-2822", raises=(TypeError, ValueError))
    def _rfc2822(value):
        return not isinstance(value, str) or parsedate_to_datetime(value).tzinfo is not None

    return jsonschema.Draft202012Validator(root, format_checker=checker)


def assert_valid_message(validator, document):
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


# --- a webhook receiver -----------------------------------------------------------------------


class Receiver:
    """A tiny HTTP server recording the form posts it gets (status callbacks, inbound SMS)."""

    def __init__(self):
        self.posts: list[tuple[str, dict[str, str], dict[str, str]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                received.append(
                    (self.path, {k: v[0] for k, v in form.items()}, dict(self.headers.items()))
                )
                body = b"<Response/>"
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def assert_signed(url, params, headers, token=TOKEN):
    assert RequestValidator(token).validate(url, params, headers["X-Twilio-Signature"])


# --- the SDK against the fake ----------------------------------------------------------------


def test_sdk_sends_a_message_that_matches_the_spec(fake, message_validator):
    message = sdk_client(fake).messages.create(
        to=TO,
        from_=FROM,
        body="Your reward is ready",
        status_callback="https://example.test/twilio/status",
        validity_period=600,
        smart_encoded=True,
    )

    assert fake.schema_violations() == []
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", TO, FROM)
    assert message.num_segments == "1"
    assert message.direction == "outbound-api"
    assert message.date_created is not None  # the SDK parsed the RFC 2822 date
    [request] = fake.requests
    assert request.account_sid == SID
    assert request.params["ValidityPeriod"] == "600"
    assert request.params["SmartEncoded"] == "true"
    assert request.response_status == 201 and request.message_sid == message.sid
    assert request.received_at.tzinfo is not None and request.received_monotonic > 0
    assert [m["sid"] for m in fake.sent_to(TO)] == [message.sid]
    assert_valid_message(message_validator, fake.get_message(message.sid))


def test_raw_201_and_fetch_validate_against_response_schema(fake, message_validator):
    created = post_message(fake, {"To": TO, "From": FROM, "Body": "€ and 😀"})
    assert created.status_code == 201
    document = created.json()
    assert_valid_message(message_validator, document)
    assert document["num_segments"] == "1" and document["price"] is None
    assert document["uri"] == f"/2010-04-01/Accounts/{SID}/Messages/{document['sid']}.json"

    fetched = requests.get(f"{fake.base_url}{document['uri']}", auth=(SID, TOKEN), timeout=5).json()
    assert fetched == document
    assert_valid_message(message_validator, fetched)


def test_messaging_service_message_is_accepted(fake, message_validator):
    message = sdk_client(fake).messages.create(
        to=TO, messaging_service_sid=SERVICE, body="Hi from the service"
    )
    assert message.status == "accepted" and message.from_ is None
    assert message.messaging_service_sid == SERVICE
    assert fake.schema_violations() == []
    assert_valid_message(message_validator, fake.get_message(message.sid))


def test_sdk_fetch_and_unknown_sid_404(fake):
    client = sdk_client(fake)
    sent = client.messages.create(to=TO, from_=FROM, body="x")
    assert client.messages(sent.sid).fetch().body == "x"

    with pytest.raises(TwilioRestException) as caught:
        client.messages("SM" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
    # Another account can't see it either.
    with pytest.raises(TwilioRestException) as caught:
        sdk_client(fake, OTHER_SID, OTHER_TOKEN).messages(sent.sid).fetch()
    assert caught.value.code == 20404


# --- authentication -------------------------------------------------------------------------


AUTH_ERROR = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}


@pytest.mark.parametrize(
    "auth",
    [
        (SID, "wrong-token"),
        ("AC" + "d4" * 16, TOKEN),  # unknown account
        (OTHER_SID, OTHER_TOKEN),  # valid, but not the account in the URL
        None,
    ],
    ids=["wrong-token", "unknown-account", "other-account", "no-auth"],
)
def test_bad_credentials_get_401(fake, auth):
    response = requests.post(
        f"{fake.base_url}/2010-04-01/Accounts/{SID}/Messages.json",
        data={"To": TO, "From": FROM, "Body": "x"},
        auth=auth,
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json() == AUTH_ERROR
    assert fake.messages == []


def test_sdk_with_bad_token_raises_20003(fake):
    with pytest.raises(TwilioRestException) as caught:
        sdk_client(fake, SID, "nope").messages.create(to=TO, from_=FROM, body="x")
    assert (caught.value.status, caught.value.code) == (401, 20003)


def test_malformed_basic_header_gets_401(fake):
    response = requests.post(
        f"{fake.base_url}/2010-04-01/Accounts/{SID}/Messages.json",
        data={"To": TO, "From": FROM, "Body": "x"},
        headers={"Authorization": "Basic " + base64.b64encode(b"no-colon").decode() + "!"},
        timeout=5,
    )
    assert response.status_code == 401


# --- request validation ---------------------------------------------------------------------

GOOD = {"To": TO, "From": FROM, "Body": "hello"}


@pytest.mark.parametrize(
    ("change", "code", "mentions"),
    [
        ({"Bodyy": "typo"}, 20001, "Bodyy"),
        ({"To": None}, 21604, "To"),
        ({"To": "4155552671"}, 21211, "E.164"),
        ({"To": "+0155552671"}, 21211, "E.164"),
        ({"From": "Bakery"}, 21212, "E.164"),
        ({"From": None}, 21603, "MessagingServiceSid"),
        ({"MessagingServiceSid": SERVICE}, 20001, "exactly one"),
        ({"From": None, "MessagingServiceSid": "MG123"}, 20001, "MessagingServiceSid"),
        ({"Body": None}, 21602, "body"),
        ({"Body": ""}, 21602, "body"),
        ({"Body": "x" * 1601}, 21617, "1600"),
        ({"ValidityPeriod": "0"}, 90007, "ValidityPeriod"),
        ({"ValidityPeriod": "36001"}, 90007, "ValidityPeriod"),
        ({"ValidityPeriod": "1.5"}, 90007, "integer"),
        ({"StatusCallback": "/relative/path"}, 21609, "URL"),
        ({"StatusCallback": "ftp://example.test/x"}, 21609, "URL"),
        ({"StatusCallback": "https://bad_host.example/x"}, 21609, "URL"),
        ({"ProvideFeedback": "yes"}, 20001, "boolean"),
        ({"MaxPrice": "cheap"}, 20001, "number"),
        ({"Attempt": "two"}, 20001, "integer"),
        ({"ContentRetention": "forever"}, 20001, "retain"),
        ({"SendAt": "tomorrow"}, 20001, "date-time"),
        ({"MediaUrl": ["not a url"]}, 21620, "URL"),
        ({"MediaUrl": [f"https://example.test/{i}.png" for i in range(11)]}, 21623, "10"),
        ({"ContentSid": "HX1"}, 20001, "ContentSid"),
    ],
)
def test_invalid_creates_are_rejected_and_recorded(fake, change, code, mentions):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}

    response = post_message(fake, data)

    assert response.status_code == 400
    error = response.json()
    assert error["code"] == code and error["status"] == 400
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    violations = fake.schema_violations()
    assert violations and any(mentions.lower() in v.lower() for v in violations), violations
    assert fake.messages == []


@pytest.mark.parametrize(
    "extra",
    [
        {"ValidityPeriod": "1"},
        {"ValidityPeriod": "36000"},
        {"Body": "x" * 1600},
        {"Body": None, "MediaUrl": ["https://example.test/a.png", "https://example.test/b.png"]},
        {"Body": None, "ContentSid": "HX" + "0" * 32, "ContentVariables": '{"1": "x"}'},
        {"ProvideFeedback": "True", "MaxPrice": "0.5", "Attempt": "2", "RiskCheck": "disable"},
        {"SendAt": "2030-01-01T10:00:00Z", "AddressRetention": "obfuscate"},
    ],
)
def test_valid_variants_pass(fake, extra):
    data = {k: v for k, v in {**GOOD, **extra}.items() if v is not None}
    assert post_message(fake, data).status_code == 201
    assert fake.schema_violations() == []


def test_repeated_scalar_and_wrong_content_type_are_violations(fake):
    assert post_message(fake, [*GOOD.items(), ("Body", "again")]).status_code == 400
    response = requests.post(
        f"{fake.base_url}/2010-04-01/Accounts/{SID}/Messages.json",
        json=GOOD,
        auth=(SID, TOKEN),
        timeout=5,
    )
    assert response.status_code == 400
    assert len(fake.schema_violations()) == 2


def test_sdk_unknown_parameter_surfaces_as_exception(fake):
    # message_intent is in the SDK but not in this spec's CreateMessageRequest.
    with pytest.raises(TwilioRestException) as caught:
        sdk_client(fake).messages.create(to=TO, from_=FROM, body="x", message_intent="promo")
    assert caught.value.code == 20001
    assert any("MessageIntent" in v for v in fake.schema_violations())


# --- programmed failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("opted_out", 400, 21610),
        ("invalid_number", 400, 21211),
        ("not_mobile", 400, 21614),
        ("rate_limited", 429, 20429),
        ("server_error", 500, 20500),
    ],
)
def test_behaviours_surface_as_twilio_rest_exception(fake, kind, status, code):
    fake.set_behaviour(TO, kind)
    client = sdk_client(fake)
    for _ in range(2):  # a behaviour lasts until changed
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=TO, from_=FROM, body="x")
        assert (caught.value.status, caught.value.code) == (status, code)
    # Other recipients are unaffected; "ok" clears it.
    client.messages.create(to="+14155550100", from_=FROM, body="x")
    fake.set_behaviour(TO, "ok")
    client.messages.create(to=TO, from_=FROM, body="x")
    assert len(fake.messages) == 2
    assert fake.schema_violations() == []


def test_fail_next_is_one_shot_and_queues(fake):
    fake.fail_next(TO, 21610)
    fake.fail_next(TO, 20429, status=429)
    client = sdk_client(fake)
    codes = []
    for _ in range(3):
        try:
            client.messages.create(to=TO, from_=FROM, body="x")
            codes.append("ok")
        except TwilioRestException as exc:
            codes.append((exc.status, exc.code))
    assert codes == [(400, 21610), (429, 20429), "ok"]
    assert [r.error_code for r in fake.requests] == [21610, 20429, None]


def test_timeout_behaviour_times_out_the_client_after_the_request_was_sent(fake):
    fake.set_behaviour(TO, "timeout")
    fake.timeout_delay = 2.0
    client = sdk_client(fake, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.messages.create(to=TO, from_=FROM, body="x")
    assert time.monotonic() - started < 1.5

    # Twilio did receive it and created the message: the sender can't tell.
    [request] = fake.requests
    assert request.params["To"] == TO and request.schema_errors == []
    assert [m["to"] for m in fake.messages] == [TO]


def test_latency_delays_every_answer(fake):
    fake.latency = 0.2
    started = time.monotonic()
    sdk_client(fake).messages.create(to=TO, from_=FROM, body="x")
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    "raw",
    [
        b"NONSENSE\r\n\r\n",
        b"POST /x HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_malformed_http_gets_400_and_close(fake, raw):
    address = urlsplit(fake.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(raw)
        answer = conn.makefile("rb").read()  # read to EOF: the fake closes
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_unknown_route_is_404(fake):
    response = requests.get(f"{fake.base_url}/2010-04-01/Accounts/{SID}.json", timeout=5)
    assert response.status_code == 404 and response.json()["code"] == 20404


# --- status callbacks and inbound webhooks --------------------------------------------------


def test_auto_callbacks_arrive_signed_and_in_order(fake, receiver, message_validator):
    fake.auto_callbacks = True
    fake.callback_delay = 0.01
    url = f"{receiver.url}/twilio/status?tenant=alices-bakery"
    message = sdk_client(fake).messages.create(to=TO, from_=FROM, body="x", status_callback=url)

    attempts = fake.wait_for_callbacks(2)
    assert [a.status_code for a in attempts] == [200, 200]
    assert [params["MessageStatus"] for _, params, _ in receiver.posts] == ["sent", "delivered"]
    for path, params, headers in receiver.posts:
        assert path == "/twilio/status?tenant=alices-bakery"
        assert_signed(url, params, headers)
        assert params["MessageSid"] == params["SmsSid"] == message.sid
        assert params["SmsStatus"] == params["MessageStatus"]
        assert (params["AccountSid"], params["From"], params["To"]) == (SID, FROM, TO)
        assert params["ApiVersion"] == "2010-04-01" and "ErrorCode" not in params
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"

    stored = sdk_client(fake).messages(message.sid).fetch()
    assert stored.status == "delivered" and stored.date_sent is not None
    assert_valid_message(message_validator, fake.get_message(message.sid))


@pytest.mark.parametrize(
    ("final", "error_code", "expected"),
    [
        ("undelivered", 30005, ["sent", "undelivered"]),
        ("undelivered", None, ["sent", "undelivered"]),
        ("failed", 30007, ["failed"]),
    ],
)
def test_configured_final_status_carries_error_code(fake, receiver, final, error_code, expected):
    fake.auto_callbacks = True
    fake.callback_delay = 0.01
    fake.set_final_status(TO, final, error_code)
    message = sdk_client(fake).messages.create(
        to=TO, from_=FROM, body="x", status_callback=f"{receiver.url}/status"
    )

    fake.wait_for_callbacks(len(expected))
    time.sleep(0.05)  # nothing more arrives
    statuses = [params["MessageStatus"] for _, params, _ in receiver.posts]
    assert statuses == expected
    *before, last = [params for _, params, _ in receiver.posts]
    assert last["ErrorCode"] == str(error_code or 30003)
    assert all("ErrorCode" not in params for params in before)  # "sent" carries none
    stored = fake.get_message(message.sid)
    assert (stored["status"], stored["error_code"]) == (final, error_code or 30003)


def test_messaging_service_callbacks_name_the_service(fake, receiver):
    fake.auto_callbacks = True
    fake.callback_delay = 0.01
    sdk_client(fake).messages.create(
        to=TO, messaging_service_sid=SERVICE, body="x", status_callback=f"{receiver.url}/s"
    )
    fake.wait_for_callbacks(2)
    for _, params, headers in receiver.posts:
        assert params["MessagingServiceSid"] == SERVICE
        assert params["From"] == fake.service_sender
        assert_signed(f"{receiver.url}/s", params, headers)


def test_no_callbacks_unless_enabled(fake, receiver):
    sdk_client(fake).messages.create(
        to=TO, from_=FROM, body="x", status_callback=f"{receiver.url}/s"
    )
    time.sleep(0.2)
    assert receiver.posts == [] and fake.callbacks == []


def test_manual_status_callback(fake, receiver):
    message = sdk_client(fake).messages.create(
        to=TO, from_=FROM, body="x", status_callback=f"{receiver.url}/s"
    )
    assert fake.send_status_callback(message.sid, "undelivered", 30003) == (200, "<Response/>")
    [(_, params, headers)] = receiver.posts
    assert (params["MessageStatus"], params["ErrorCode"]) == ("undelivered", "30003")
    assert_signed(f"{receiver.url}/s", params, headers)
    assert fake.get_message(message.sid)["status"] == "undelivered"

    # To another URL; a callback to nowhere is recorded, not raised.
    status, _ = fake.send_status_callback(message.sid, "delivered", url=f"{receiver.url}/other")
    assert status == 200 and receiver.posts[-1][0] == "/other"
    status, error = fake.send_status_callback(message.sid, "delivered", url="http://127.0.0.1:9/")
    assert status is None and error


def test_send_inbound_posts_a_signed_webhook(fake, receiver):
    url = f"{receiver.url}/twilio/inbound"
    status, body = fake.send_inbound(url, OTHER_TOKEN, {"From": TO, "To": FROM, "Body": "STOP"})

    assert (status, body) == (200, "<Response/>")
    [(_, params, headers)] = receiver.posts
    assert_signed(url, params, headers, OTHER_TOKEN)
    assert not RequestValidator(TOKEN).validate(url, params, headers["X-Twilio-Signature"])
    assert params["AccountSid"] == OTHER_SID
    assert (params["From"], params["To"], params["Body"]) == (TO, FROM, "STOP")
    assert params["NumMedia"] == "0" and params["ApiVersion"] == "2010-04-01"
    assert params["MessageSid"].startswith("SM")


# --- load -------------------------------------------------------------------------------------


def test_concurrent_clients_over_keep_alive(fake):
    threads, per_thread = 4, 100

    def send_many(n):
        client = sdk_client(fake)  # one pooled keep-alive connection per thread
        return [
            client.messages.create(to=f"+1415555{n:02d}{i:02d}", from_=FROM, body="x").sid
            for i in range(per_thread)
        ]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        sids = [sid for batch in pool.map(send_many, range(threads)) for sid in batch]
    elapsed = time.monotonic() - started

    assert len(set(sids)) == threads * per_thread == len(fake.messages)
    assert fake.schema_violations() == []
    # One connection per client thread: the clients really kept them alive.
    assert fake.connections_opened <= threads
    assert elapsed < 30  # generous: this is a correctness check, the benchmark measures speed


def test_runs_as_a_separate_process():
    # Benchmarks run it apart so their client threads don't share the server's GIL.
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_twilio", "--account", f"{SID}:{TOKEN}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the repository root, for -m tests...
    )
    try:
        base_url = process.stdout.readline().strip()
        response = requests.post(
            f"{base_url}/2010-04-01/Accounts/{SID}/Messages.json",
            data=GOOD,
            auth=(SID, TOKEN),
            timeout=5,
        )
        assert response.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=10)
