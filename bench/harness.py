"""What every benchmark here needs: its own database, the real server, and a load generator.

- bench_database(): a fresh database on the configured PostgreSQL server (DATABASE_URL, or the
  embedded one), migrated, dropped at the end.
- web_server(): gunicorn with the project's own gunicorn settings, on a free loopback port.
- closed_loop(): N clients back to back for a while → requests/s.
- open_loop(): requests at a fixed rate, latency measured from when each was due (so a slow
  server can't hide its queue: no coordinated omission) → percentiles.
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


def _admin_connection():
    import psycopg2
    from django.conf import settings

    db = settings.DATABASES["default"]
    conn = psycopg2.connect(
        dbname="postgres",
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
    )
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

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(len(latencies), time.perf_counter() - began, latencies, errors[0])


def json_request(path: str, key: str, body: dict) -> tuple[str, str, bytes, dict]:
    return (
        "POST",
        path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


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
