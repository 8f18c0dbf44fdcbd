"""Browser tests: the product as `make run` serves it, driven in Debian's chromium.

One server for the whole session: `manage.py serve` (what `make run` runs: migrate, the demo
brand, then gunicorn, a Celery worker and beat) on a free port, against a database of its own
and a Redis database of its own, so its worker never takes another test's tasks. Each test gets
a fresh browser context (no cookies) on the one headless chromium.

Screenshots: `shot(page, "name")` writes docs/screenshots/name.png when SCREENSHOTS=1 (what
`make screenshots` sets), so the README's pictures are what these tests saw.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect, sync_playwright

from loyaltysms.demo import DEMO_EMAIL, DEMO_PASSWORD

from ..test_make_run import ROOT, database_url, free_port, server_connection

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

expect.set_options(timeout=15_000)


def redis_url_with_db(url: str, db: int) -> str:
    """The same Redis server, another database: /N for redis://, ?db=N for a socket."""
    if url.startswith("unix://"):
        return url.partition("?")[0] + f"?db={db}"
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@dataclass
class App:
    url: str
    database: str
    log: Path

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows from the server's own database (for checks a page doesn't show)."""
        connection = server_connection(self.database)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own server
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _flush_redis_db(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def free_redis_db(url: str) -> int:
    """An empty database of the Redis server (the highest free number), so the server's
    worker never takes another test's tasks and its flush never touches anyone's data."""
    import redis

    for db in range(15, 0, -1):
        candidate = redis_url_with_db(url, db)
        if redis.Redis.from_url(candidate).dbsize() == 0:
            return db
    raise RuntimeError(f"no empty Redis database on {url} for the browser tests' server")


@pytest.fixture(scope="package")
def app(tmp_path_factory, django_db_blocker) -> App:
    # Per package: the server (gunicorn, a worker, beat) stops when the browser tests end,
    # not at the end of the whole run.
    name = f"loyaltysms_browser_{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        admin = server_connection("postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    redis_url = redis_url_with_db(settings.REDIS_URL, free_redis_db(settings.REDIS_URL))
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(name),
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PUBLIC_BASE_URL": "",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = App(url=f"http://127.0.0.1:{port}", database=name, log=log_path)
    try:
        deadline = time.monotonic() + 240
        while _get(f"{app.url}/healthz") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{app.output()[-4000:]}")
            time.sleep(0.5)
        while not ("ready." in app.output() and "beat: Starting" in app.output()):
            if time.monotonic() > deadline:
                pytest.fail(f"the worker or beat did not start:\n{app.output()[-4000:]}")
            time.sleep(0.5)
        yield app
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        _flush_redis_db(redis_url)


@pytest.fixture(scope="module")
def browser():
    # Per module: while Playwright's sync API is open, its event loop runs in this thread and
    # Django refuses ORM calls here, so it must be closed before other tests run. (These tests
    # check the server's own database with App.sql, never through the ORM.)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app) -> Page:
    """A fresh context (no cookies) at a laptop's size; the app's errors fail the test."""
    context = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}") if response.status >= 500 else None
        ),
    )
    yield page
    context.close()
    assert errors == [], f"server errors or page script errors: {errors}"


def sign_in(page: Page, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def shot(page: Page, name: str) -> None:
    """A README screenshot, written only when SCREENSHOTS=1 (make screenshots)."""
    if os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def axe_violations(page: Page, *, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's violations of the given impacts on the page as it stands."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in results["violations"]
        if violation["impact"] in impacts
    ]


def wait_for(predicate, *, timeout: float = 30.0, every: float = 0.5, what: str = "it"):
    """Poll a condition the server reaches on its own (the worker, beat)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
