"""What every benchmark here needs: its own database, the real server, and a load generator.

- bench_database(): a fresh database on the configured PostgreSQL server (DATABASE_URL, or the
  embedded one), migrated, dropped at the end.
- create_brand(): a brand and its API key; connect(): a psycopg2 connection outside Django.
- web_server(): gunicorn with the project's own gunicorn settings, on a free loopback port.
- closed_loop(): N clients back to back for a while → requests/s.
- open_loop(): requests at a fixed rate, latency measured from when each was due (so a slow
  server can't hide its queue: no coordinated omission) → percentiles.
- paced(): open_loop for a server that may not keep up (errors counted, gives up when far behind).
- LatencyTable: a LoadResult's percentiles as aligned columns; merged(): rounds as one result.
- server_cpu(), busy_seconds(): CPU used by the server and by the whole machine.
- record(): a headline figure for bench/RESULTS.md, when run by `make bench` (bench/results.py).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(db_name: str) -> None:
    os.environ["BENCH_DB_NAME"] = db_name
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def connect(dbname: str):
    """A psycopg2 connection to `dbname` on the configured server, outside Django (autocommit
    off), for work that must not go through the ORM."""
    import psycopg2
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg2.connect(
        dbname=dbname,
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
    )


def _admin_connection():
    conn = connect("postgres")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[str]:
    """Create, migrate, yield, drop. Django must be set up with setup_django(name) first."""
    from django.core.management import call_command
    from django.db import connections

    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        call_command("migrate", verbosity=0)
        yield name
    finally:
        connections.close_all()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def create_brand(slug: str, name: str, owner_email: str):
    """A new brand with its owner, as sign-up makes one (tenant_create's result: the tenant and
    its API key); the password only has to pass validation in a throwaway database."""
    from loyaltysms.services import tenant_create

    return tenant_create(
        slug=slug,
        name=name,
        owner_email=owner_email,
        owner_password="bench-password-123",  # noqa: S106 - a throwaway database
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def web_server(db_name: str) -> Iterator[int]:
    """gunicorn as `make run` starts it (loyaltysms.gunicorn_conf), serving bench.urls."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_DB_NAME": db_name,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:loyaltysms.gunicorn_conf",
            "--access-logfile",
            "/dev/null",
            "loyaltysms.wsgi",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # The server's log is read as it comes, keeping the end for an error message: unread, a
    # full pipe (64 KB: a few hundred warnings, e.g. for 4xx answers) would block every worker.
    log: collections.deque[bytes] = collections.deque(maxlen=50)
    reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        started = False
        while not started and time.monotonic() < deadline and process.poll() is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                started = conn.getresponse().status == 200
            except OSError:
                time.sleep(0.2)
        if not started:
            reader.join(timeout=2)
            raise RuntimeError(f"gunicorn did not start: {b''.join(log)[-4000:]!r}")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


Request = Callable[[int], tuple[str, str, bytes, dict]]  # i → (method, path, body, headers)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def merged(results: list[LoadResult]) -> LoadResult:
    """Several rounds of one measurement as one result (all latencies, summed counts and time),
    so percentiles are over every request rather than a median of per-round figures."""
    return LoadResult(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        latencies_ms=[ms for r in results for ms in r.latencies_ms],
        errors=sum(r.errors for r in results),
    )


@dataclass(frozen=True)
class LatencyTable:
    """LoadResults as aligned columns: p50, p95, p99 and max latency (ms), requests sent,
    requests/s when `rate`, and errors; header() and row() share the widths so they line up."""

    name_width: int
    p50_width: int
    width: int  # p95, p99, max and req/s
    errors_label: str = "failed"
    rate: bool = False

    def header(self) -> str:
        w = self.width
        rate = f"{'req/s':>{w}}" if self.rate else ""
        return (
            f"{'':<{self.name_width}}{'p50':>{self.p50_width}}{'p95':>{w}}{'p99':>{w}}"
            f"{'max':>{w}}{'sent':>8}{rate}{self.errors_label:>8}"
        )

    def row(self, name: str, result: LoadResult) -> str:
        w, p = self.width, result.percentile
        rate = f"{result.rate:{w}.1f}" if self.rate else ""
        return (
            f"{name:<{self.name_width}}{p(50):{self.p50_width}.1f}{p(95):{w}.1f}{p(99):{w}.1f}"
            f"{max(result.latencies_ms):{w}.1f}{result.requests:8d}{rate}{result.errors:8d}"
        )


def _in_threads(client: Callable[[], None], count: int) -> None:
    """Run `count` copies of `client` at once and wait for all of them."""
    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _send(conn: http.client.HTTPConnection, request) -> int:
    method, path, body, headers = request
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def closed_loop(
    port: int, make: Request, *, clients: int, seconds: float, start: int = 0
) -> LoadResult:
    """`clients` connections sending back to back for `seconds`."""
    counter = iter(range(start, 10**9))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter)
            began = time.perf_counter()
            status = _send(conn, make(i))
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(elapsed)
                if status >= 300:
                    errors[0] += 1
        conn.close()

    began = time.monotonic()
    _in_threads(client, clients)
    return LoadResult(len(latencies), time.monotonic() - began, latencies, errors[0])


def open_loop(
    port: int, make: Request, *, rate: float, seconds: float, clients: int, start: int = 0
) -> LoadResult:
    """Requests due every 1/rate s; each latency counts from when it was due."""
    total = int(rate * seconds)
    began = time.perf_counter() + 0.2
    due = [began + i / rate for i in range(total)]
    next_index = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            wait = due[i] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status = _send(conn, make(start + i))
            elapsed = (time.perf_counter() - due[i]) * 1000
            with lock:
                latencies.append(elapsed)
                if status >= 300:
                    errors[0] += 1
        conn.close()

    _in_threads(client, clients)
    return LoadResult(len(latencies), time.perf_counter() - began, latencies, errors[0])


@dataclass
class Paced:
    result: LoadResult
    unsent: int  # not offered: the server had fallen too far behind
    refused: int  # answered 429


def paced(
    port: int,
    make: Request,
    *,
    rate: float,
    seconds: float,
    clients: int,
    start: int = 0,
    began: float | None = None,
    give_up: float = 10.0,
    refused_ok: bool = False,
    retry_stale: bool = False,
) -> Paced:
    """open_loop, for a server that may not keep up: latency counts from when each request was
    due (no coordinated omission), a failed request counts as an error instead of killing its
    thread, and once the server is `give_up` seconds behind no more requests are offered
    (the unsent are not in the result), so an overloaded run ends instead of queueing for
    minutes. The schedule starts at `began` (a time.perf_counter() value, the machine's
    monotonic clock, so load from several processes can agree on it; default 0.2 s from now).
    429s are counted apart, and are errors too unless `refused_ok`. `make` is called under a
    lock, in request order, so a generator drawing random numbers is repeatable. With
    `retry_stale`, a request whose keep-alive connection turns out closed is sent once more
    on a fresh one (the latency still counts from when it was due)."""
    total = int(rate * seconds)
    if began is None:
        began = time.perf_counter() + 0.2
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors = [0]
    refused = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = state["next"]
                due = began + i / rate
                if i >= total or time.perf_counter() - due > give_up:
                    break
                state["next"] += 1
                request = make(start + i)
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            method, path, body, headers = request
            for attempt in (1, 2):
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    limited = response.status == 429
                    failed = response.status >= 300 and not (refused_ok and limited)
                    break
                except OSError as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    # gunicorn closes a keep-alive connection after 2 s idle: at a low rate a
                    # thread's connection may be gone when its next request is due.
                    stale = isinstance(exc, ConnectionResetError | BrokenPipeError)
                    if attempt == 2 or not (retry_stale and stale):
                        failed, limited = True, False
                        break
            elapsed = (time.perf_counter() - due) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += failed
                refused[0] += limited
        conn.close()

    _in_threads(client, clients)
    result = LoadResult(len(latencies), time.perf_counter() - began, latencies, errors[0])
    return Paced(result, total - state["next"], refused[0])


def json_request(path: str, key: str, body: dict) -> tuple[str, str, bytes, dict]:
    return (
        "POST",
        path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def server_cpu() -> float:
    """CPU seconds so far of this process's children: web_server()'s gunicorn master and
    workers. A child that has exited is not counted."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def busy_seconds(times) -> float:
    """The machine's CPU seconds neither idle nor waiting on I/O, from psutil.cpu_times(): the
    difference of two readings is how busy the whole machine was in between."""
    return sum(times) - times.idle - times.iowait


def record(
    bench: str,
    figure: str,
    value: str,
    *,
    baseline: str = "",
    ratio: str = "",
    goal: str = "",
    met: bool | None = None,
) -> None:
    """One row of bench/RESULTS.md's summary table: appended as a JSON line to the file named
    by BENCH_RECORD (set by bench/results.py); nothing happens when a bench runs on its own.
    Values are the strings the bench prints, so the table shows what the output shows."""
    path = os.environ.get("BENCH_RECORD")
    if not path:
        return
    row = {
        "bench": bench,
        "figure": figure,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "met": met,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
