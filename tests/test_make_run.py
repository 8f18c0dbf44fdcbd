"""`make run`'s recipe really serves the dashboard, with a worker and beat beside it.

Runs `python -m loyaltysms.embedded run -- python manage.py serve` (the Makefile's recipe) on a
free port against a fresh database on the same PostgreSQL server, waits for the login page,
then sends Ctrl-C and checks every process exits.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_connection(dbname: str):
    db = settings.DATABASES["default"]
    return psycopg2.connect(
        dbname=dbname,
        user=db["USER"],
        password=db.get("PASSWORD") or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


def database_url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    auth = quote(db["USER"], safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db["HOST"] or "localhost", safe="")  # a socket directory is percent-encoded
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{dbname}"


@pytest.fixture
def fresh_database():
    name = f"loyaltysms_run_{uuid.uuid4().hex[:8]}"
    admin = server_connection("postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_make_run_serves_the_login_page_and_stops_cleanly(fresh_database, tmp_path):
    port = free_port()
    log_path = tmp_path / "run.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(fresh_database),
        "REDIS_URL": settings.REDIS_URL,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "loyaltysms.embedded", "run", "--",
             sys.executable, "manage.py", "serve"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        started = time.monotonic()
        status = None
        while time.monotonic() - started < 180:
            try:
                status, body = get(f"http://127.0.0.1:{port}/login/")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = None
            if status == 200 or process.poll() is not None:
                break
            time.sleep(0.5)
        output = log_path.read_text()
        assert status == 200, f"no login page within 180 s:\n{output[-3000:]}"
        assert "Sign in" in body
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, '{"db": "ok", "redis": "ok"}')
        assert "Demo login: demo@loyaltysms.test" in output
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            "ready." in output and "beat: Starting" in output
        ):
            time.sleep(0.5)
            output = log_path.read_text()
        assert "ready." in output, f"the worker never became ready:\n{output[-3000:]}"
        assert "beat: Starting" in output, f"beat never started:\n{output[-3000:]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    time.sleep(1)
    leftovers = subprocess.run(
        ["pgrep", "-g", str(process.pid)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
