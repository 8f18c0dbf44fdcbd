# ruff: noqa: S603 - our own servers, binaries and arguments
"""Redis down for two minutes while orders arrive: the API keeps answering, and the events
the orders caused are processed after recovery, none lost and none applied twice.

The real processes run against the private servers: gunicorn (the Procfile's web command),
a Celery worker for the usual queues, one for the outgoing webhooks, and beat (which drives
the outbox: flows_tick, hooks_tick). A brand of the test's own has a live flow that awards a
bonus point for every order, and a webhook endpoint for points earned whose receiver here
counts every event id it is sent. Beside the orders, the storefront's other calls that
touch Redis keep coming: an SMS sign-up every few seconds (its "Reply Y" text wakes the
dispatcher through the broker) and the widget's config (rate-limited in the Redis cache).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from chaos.conftest import free_port
from chaos.processes import QUEUES, Workers, stop_group

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = 40
SUBTOTAL = "10.00"  # 10 points at the default program's 1 point per unit
ORDER_POINTS = 10
FLOW_BONUS = 1  # the live flow's award for every order placed
RATE = 4.0  # orders per second, spread over CLIENTS threads
CLIENTS = 4
PHASES = ("before", "down", "after")
BEFORE = 30.0  # seconds of orders with Redis up
DOWN = 120.0  # seconds Redis is down, orders still arriving
AFTER = 30.0  # seconds of orders after Redis is back
REQUEST_TIMEOUT = 15.0  # a request this slow counts as hung
SLOW = 5.0  # no answer may take longer than this, in any phase
RECOVERY_TIMEOUT = 240.0  # every event processed within this long after Redis is back
OVERALL_TIMEOUT = 900.0
# Texts not handed to the carrier yet.
TEXTS_WAITING = {"queued", "deferred", "sending"}
# Handed to the carrier: its receipt says sent, delivered, or (the sandbox's 2 %) undelivered.
TEXTS_HANDED_OVER = {"sent", "delivered", "undelivered"}
SIDE_EVERY = 2.0  # seconds between the other storefront calls (a sign-up, the widget's config)
DISCLOSURE = "By checking this box you agree to receive recurring automated marketing texts."


class EventReceiver:
    """The brand's webhook endpoint: answers 200 and counts each event id it is sent."""

    def __init__(self):
        self.ids: Counter = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.ids[json.loads(body)["id"]] += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def received(self) -> Counter:
        with self.lock:
            return Counter(self.ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Group:
    """A process we start in a process group of its own (gunicorn and its workers, beat)."""

    def __init__(self, name: str, command: list[str], env: dict, logdir: Path):
        self.name, self.log_path = name, logdir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_group(self.process)
        self.log.close()

    def tail(self, lines: int = 20) -> str:
        return "".join(self.log_path.read_text().splitlines(True)[-lines:])


@dataclass
class Call:
    phase: str
    order_id: str  # or the number signed up, or "widget"
    member: str
    status: int | None  # None: no answer (refused, reset, timed out)
    seconds: float
    error: str = ""


@dataclass
class Load:
    """Orders at a steady rate from a few client threads, each with a unique order id."""

    base_url: str
    api_key: str
    widget_key: str
    phase: str = "before"
    calls: list[Call] = field(default_factory=list)
    side_calls: list[Call] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self, index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        interval = CLIENTS / RATE
        next_at = time.monotonic() + index * interval / CLIENTS
        n = 0
        while not self.stopping.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            n += 1
            phase = self.phase
            order_id = f"o-{index}-{n}"
            member = f"m{(index * 7919 + n) % MEMBERS}"
            began = time.monotonic()
            status, error = None, ""
            try:
                response = session.post(
                    f"{self.base_url}/api/v1/orders",
                    json={
                        "order_id": order_id,
                        "member": member,
                        "subtotal": SUBTOTAL,
                        "currency": "USD",
                    },
                    timeout=REQUEST_TIMEOUT,
                )
                status = response.status_code
                if status >= 300:
                    error = response.text[:300]
            except requests.RequestException as exc:
                error = repr(exc)[:300]
            self.calls.append(
                Call(phase, order_id, member, status, time.monotonic() - began, error)
            )

    def run_side(self) -> None:
        """An SMS sign-up (double opt-in: a "Reply Y" text) and the widget's config, in turn."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        n = 0
        while not self.stopping.wait(SIDE_EVERY):
            n += 1
            phase, began = self.phase, time.monotonic()
            status, error = None, ""
            if n % 2:
                target = f"+1212555{1000 + n:04d}"
                request = partial(
                    session.post,
                    f"{self.base_url}/api/v1/subscribers",
                    json={
                        "phone": target,
                        "source": "web_form",
                        "consent_text": DISCLOSURE,
                        "consent_url": "https://shop.example/join",
                    },
                )
            else:
                target = "widget"
                request = partial(
                    requests.get, f"{self.base_url}/widget/v1/{self.widget_key}/config"
                )
            try:
                response = request(timeout=REQUEST_TIMEOUT)
                status = response.status_code
                if status >= 300:
                    error = response.text[:300]
            except requests.RequestException as exc:
                error = repr(exc)[:300]
            self.side_calls.append(Call(phase, target, "", status, time.monotonic() - began, error))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(receiver_url: str) -> tuple[int, str, str]:
    """A brand of the test's own: an API key, a live flow awarding a point per order, a
    webhook endpoint for points earned, and its storefront widget switched on."""
    from django.test import override_settings
    from django.utils import timezone

    from automations.services.flows import flow_create, flow_set_status
    from hooks.services.endpoints import endpoint_create
    from loyaltysms.services import tenant_create
    from storefront.services import widget_get, widget_update

    slug = f"redis-down-{uuid.uuid4().hex[:8]}"
    created = tenant_create(
        slug=slug,
        name="Redis down",
        owner_email=f"{slug}@chaos.test",
        owner_password="chaos-password-123",  # noqa: S106 - a throwaway database
    )
    tenant, now = created.tenant, timezone.now()
    flow = flow_create(
        tenant=tenant,
        now=now,
        name="A point per order",
        trigger={"type": "order_placed"},
        steps={
            "start": "bonus",
            "steps": {"bonus": {"type": "award_points", "points": FLOW_BONUS, "next": None}},
        },
    )
    flow_set_status(flow=flow, status="live", now=now)
    with override_settings(HOOKS_ALLOW_PRIVATE_URLS=True):
        endpoint_create(tenant=tenant, url=receiver_url, events=["points_earned"], actor=None)
    widget = widget_update(
        widget=widget_get(tenant), origins=["https://shop.example"], enabled=True
    )
    return tenant.pk, created.api_key.raw_key, widget.publishable_key


def wait_for_web(base_url: str, web: Group) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert web.process.poll() is None, f"gunicorn exited:\n{web.tail()}"
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"gunicorn did not answer:\n{web.tail()}")


def books(tenant_id: int) -> dict:
    """What PostgreSQL holds for the brand."""
    from django.db import connections

    from hooks.models import WebhookDelivery
    from loyaltysms.models import Tenant
    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import OutboundMessage
    from programs.models import LoyaltyEvent, Member, Order, PointsEntry

    connections.close_all()
    tenant = Tenant.objects.get(pk=tenant_id)
    with tenant_scope(tenant):
        from automations.models import FlowRun

        earned = LoyaltyEvent.objects.filter(kind="points_earned")
        return {
            "orders": list(Order.objects.values_list("order_id", flat=True)),
            "order_entries": PointsEntry.objects.filter(source="order").count(),
            "bonus_entries": PointsEntry.objects.filter(source="bonus").count(),
            "members": {
                m.external_id: (m.points_balance, m.orders_count) for m in Member.objects.all()
            },
            "earned_ids": set(earned.values_list("id", flat=True)),
            "unprocessed": LoyaltyEvent.objects.filter(processed_at__isnull=True).count(),
            "unhooked": LoyaltyEvent.objects.filter(hooked_at__isnull=True).count(),
            "runs": FlowRun.objects.count(),
            "runs_active": FlowRun.objects.filter(status="active").count(),
            "deliveries": Counter(
                WebhookDelivery.objects.filter(event_id__isnull=False).values_list(
                    "event_id", flat=True
                )
            ),
            "deliveries_pending": WebhookDelivery.objects.exclude(status="delivered").count(),
            "texts": list(OutboundMessage.objects.values_list("to", "status")),
        }


def test_orders_keep_coming_while_redis_is_down(chaos_env, private_redis, workdir):
    began = time.monotonic()
    logdir = workdir / "redis-down"
    logdir.mkdir()
    (workdir / "data").mkdir(exist_ok=True)
    env = {**chaos_env, "HOOKS_ALLOW_PRIVATE_URLS": "1", "PYTHONUNBUFFERED": "1"}
    receiver = EventReceiver()
    tenant_id, api_key, widget_key = seed(receiver.url)

    port = free_port()
    web_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": "2", "WEB_THREADS": "4"}
    base_url = f"http://127.0.0.1:{port}"
    processes: list = []
    load = Load(base_url, api_key, widget_key)
    threads: list[threading.Thread] = []
    log: list[str] = []
    outcome: dict = {}
    exits: list[str] = []
    celery_workers: list[Workers] = []

    def at() -> str:
        return f"{time.monotonic() - began:.0f}s"

    def supervise(seconds: float) -> None:
        """Wait, restarting a Celery worker that exited, as the deployment's supervisor does
        (docker-compose's `restart: unless-stopped`): the exit is recorded, and fails the
        test at the end; the restart lets the rest of the run show what it would cost."""
        until = time.monotonic() + seconds
        while True:
            assert web.process.poll() is None, f"gunicorn exited:\n{diagnostics()}"
            assert beat.process.poll() is None, f"beat exited:\n{diagnostics()}"
            for workers in celery_workers:
                code = workers.process.poll()
                if code is not None:
                    path = logdir / f"{workers.name}-{workers.starts}.log"
                    why = [
                        json.loads(line)["message"][:200]
                        for line in path.read_text().splitlines()
                        if line.startswith("{") and "Unrecoverable" in line
                    ]
                    exits.append(f"{workers.name} exited ({code}) at {at()}: {why[:1]}")
                    log.append(f"{workers.name} exited ({code}) at {at()}, restarted")
                    workers.start()
            if time.monotonic() >= until:
                return
            time.sleep(min(1.0, max(0.0, until - time.monotonic())))

    def diagnostics() -> str:
        tails = [f"--- {p.name}\n{p.tail()}" for p in processes if isinstance(p, Group)]
        for path in sorted(logdir.glob("rd-*.log")):
            tails.append(f"--- {path.name}\n" + "".join(path.read_text().splitlines(True)[-20:]))
        return f"events {log}\n" + "\n".join(tails)

    try:
        web = Group(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "loyaltysms.wsgi",
                "-c",
                "python:loyaltysms.gunicorn_conf",
            ],
            web_env,
            logdir,
        )
        processes.append(web)
        worker = Workers(env, logdir, queues=QUEUES, name="rd-worker")
        hooks = Workers(env, logdir, queues="hooks", name="rd-hooks")
        worker.start()
        hooks.start()
        processes += [worker, hooks]
        celery_workers = [worker, hooks]
        beat = Group(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "loyaltysms",
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(logdir / "celerybeat-schedule"),
            ],
            env,
            logdir,
        )
        processes.append(beat)
        wait_for_web(base_url, web)
        supervise(0)

        # The members, through the API, while everything is up.
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {api_key}"
            for n in range(MEMBERS):
                answer = session.post(
                    f"{base_url}/api/v1/members",
                    json={"external_id": f"m{n}", "first_name": "Ana"},
                    timeout=REQUEST_TIMEOUT,
                )
                assert answer.status_code == 201, answer.text

        log.append(f"orders begin at {at()}")
        threads = [
            threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]
        threads.append(threading.Thread(target=load.run_side, daemon=True))
        for thread in threads:
            thread.start()
        supervise(BEFORE)
        load.phase = "down"
        private_redis.stop()
        log.append(f"redis stopped at {at()}")
        supervise(DOWN)
        load.phase = "after"
        private_redis.start()
        redis_back = time.monotonic()
        log.append(f"redis started at {at()}")
        supervise(AFTER)
        load.stopping.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
        orders_ended = time.monotonic()
        log.append(f"orders end at {at()}")

        # Recovery: every event of the brand processed by the flow engine and fanned out, every
        # delivery made, every flow run finished, every "Reply Y" text handed to the carrier.
        ok_orders = {c.order_id for c in load.calls if c.status is not None and c.status < 300}
        recovered_after = None
        while True:
            state = books(tenant_id)
            received = receiver.received()
            if (
                len(state["orders"]) >= len(ok_orders)
                and state["unprocessed"] == 0
                and state["unhooked"] == 0
                and state["runs_active"] == 0
                and state["runs"] >= len(state["orders"])
                and set(received) >= state["earned_ids"]
                and len(state["earned_ids"]) >= 2 * len(state["orders"])
                and not [to for to, status in state["texts"] if status in TEXTS_WAITING]
            ):
                recovered_after = time.monotonic() - redis_back
                break
            waited = time.monotonic() - redis_back
            assert waited < RECOVERY_TIMEOUT, (
                f"not processed {waited:.0f} s after Redis came back: orders "
                f"{len(state['orders'])}/{len(ok_orders)}, unprocessed {state['unprocessed']}, "
                f"unhooked {state['unhooked']}, runs {state['runs']} "
                f"({state['runs_active']} active), points_earned {len(state['earned_ids'])}, "
                f"received {len(received)}, texts {Counter(s for _, s in state['texts'])}"
                f"\n{diagnostics()}"
            )
            assert time.monotonic() - began < OVERALL_TIMEOUT, diagnostics()
            supervise(2)
        # A little longer: anything sent twice would arrive now.
        supervise(10)
        state = books(tenant_id)
        received = receiver.received()
    finally:
        load.stopping.set()
        for process in reversed(processes):
            process.stop()
        receiver.close()
        if private_redis.process is None:
            private_redis.start()

    def figures(calls: list[Call]) -> dict:
        seconds = [c.seconds for c in calls]
        return {
            "requests": len(calls),
            "2xx": sum(1 for c in calls if c.status is not None and 200 <= c.status < 300),
            "p50_ms": round(1000 * statistics.median(seconds)) if seconds else 0,
            "p99_ms": round(1000 * percentile(seconds, 0.99)),
            "max_ms": round(1000 * max(seconds, default=0)),
        }

    phases = {p: figures([c for c in load.calls if c.phase == p]) for p in PHASES}
    sign_up_calls = [c for c in load.side_calls if c.order_id != "widget"]
    widget_calls = [c for c in load.side_calls if c.order_id == "widget"]
    sign_ups = {p: figures([c for c in sign_up_calls if c.phase == p]) for p in PHASES}
    widget = {p: figures([c for c in widget_calls if c.phase == p]) for p in PHASES}
    failed = [
        c for c in load.calls + load.side_calls if c.status is None or not 200 <= c.status < 300
    ]
    sent = [c for c in load.calls if c.status is not None and c.status < 300]
    per_member = Counter(c.member for c in sent)
    wrong_balances = {
        external_id: (balance, count)
        for external_id, (balance, count) in state["members"].items()
        if count != per_member[external_id]
        or balance != per_member[external_id] * (ORDER_POINTS + FLOW_BONUS)
    }
    recorded = Counter(state["orders"])
    doubled_deliveries = [e for e, n in state["deliveries"].items() if n > 1]
    received_twice = [e for e, n in received.items() if n > 1]
    missing = state["earned_ids"] - set(received)
    strangers = set(received) - state["earned_ids"]
    signed_up = [c.order_id for c in load.side_calls if c.order_id != "widget" and c.status]
    texts_per_number = Counter(to for to, _status in state["texts"])
    text_statuses = Counter(status for _to, status in state["texts"])
    outcome.update(
        orders_sent=len(load.calls),
        orders_2xx=len(sent),
        orders_recorded=len(recorded),
        order_entries=state["order_entries"],
        flow_runs=state["runs"],
        bonus_entries=state["bonus_entries"],
        points_earned=len(state["earned_ids"]),
        webhooks=sum(received.values()),
        wrong_balances=len(wrong_balances),
        sign_ups=len(signed_up),
        texts=dict(text_statuses),
        recovered_in_s=round(recovered_after, 1),
        after_orders_s=round(recovered_after - (orders_ended - redis_back), 1),
        worker_exits=len(exits),
        seconds=round(time.monotonic() - began),
    )
    print("\nchaos: Redis down for two minutes while orders arrive")
    for name, calls in (("orders", phases), ("sign-ups", sign_ups), ("widget", widget)):
        for phase, numbers in calls.items():
            line = ", ".join(f"{k} {v}" for k, v in numbers.items())
            print(f"  {name + ' ' + phase:<16} {line}")
    for key, value in outcome.items():
        print(f"  {key:<15} {value}")
    for line in log:
        print(f"  event: {line}")
    for call in failed[:10]:
        print(f"  failed: {call}")
    for line in exits:
        print(f"  exit: {line}")

    assert not failed, f"{len(failed)} calls not answered 2xx: {failed[:5]}"
    slowest = max(c.seconds for c in load.calls + load.side_calls)
    assert slowest < SLOW, f"a call took {slowest:.1f} s: {phases} {sign_ups} {widget}"
    assert all(calls[p]["requests"] > 0 for calls in (phases, sign_ups, widget) for p in PHASES)
    assert set(recorded) == {c.order_id for c in sent}, "orders answered ≠ orders recorded"
    assert all(n == 1 for n in recorded.values())
    assert state["order_entries"] == len(sent), "one ledger entry per order"
    assert not wrong_balances, f"balances wrong: {list(wrong_balances.items())[:10]}"
    assert state["runs"] == len(sent), "one flow run per order"
    assert state["bonus_entries"] == len(sent), "one flow bonus per order"
    assert len(state["earned_ids"]) == 2 * len(sent), "an order's points and its bonus"
    assert not missing, f"events never delivered: {sorted(missing)[:20]}"
    assert not strangers, f"events delivered that the brand doesn't have: {sorted(strangers)[:20]}"
    assert not doubled_deliveries, f"events with two deliveries: {doubled_deliveries[:20]}"
    assert not received_twice, f"events received twice: {received_twice[:20]}"
    assert state["deliveries_pending"] == 0
    # Every sign-up's "Reply Y" text sent once: made once, and handed to the carrier.
    assert sorted(texts_per_number) == sorted(signed_up), "one text per sign-up"
    assert all(n == 1 for n in texts_per_number.values()), texts_per_number
    assert set(text_statuses) <= TEXTS_HANDED_OVER, text_statuses
    # Last: the workers rode the outage out. (The figures above hold with a supervisor that
    # restarts an exited worker; a worker that exits needs one.)
    assert not exits, f"Celery workers exited during the outage: {exits}"
