"""A Celery worker rides out a Redis outage (loyaltysms.broker): with a task under way and
another slot waiting on the broker when Redis stops, the worker stays up, reconnects once
Redis is back, and takes new tasks. kombu's own Redis transport exits the worker there.

A redis-server of the test's own (tests/redis_server.py) is stopped and started; the shared
Redis is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_worker_with_a_task_under_way_rides_out_a_redis_outage(redis_server, tmp_path):
    env = {**os.environ, "OUTAGE_BROKER_URL": f"redis://127.0.0.1:{redis_server.port}/0"}
    log = tmp_path / "worker.log"
    with open(log, "w") as output:
        # Two slots: while one runs the task, the other waits on the broker (BRPOP).
        options = ["--concurrency", "2", "--loglevel", "INFO", "-n", "outage@%h"]
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.loyaltysms.outage_worker",
                "worker",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        from tests.loyaltysms import outage_worker

        outage_worker.app.conf.broker_url = env["OUTAGE_BROKER_URL"]
        assert wait_for(lambda: "ready" in log.read_text(), 60), log.read_text()
        outage_worker.busy.delay(6)
        assert wait_for(lambda: "outage_worker.busy" in log.read_text(), 20), log.read_text()

        redis_server.stop()  # the task is under way; the other slot waits on BRPOP
        time.sleep(3)
        assert worker.poll() is None, log.read_text()[-3000:]

        redis_server.start()
        marked = tmp_path / "marked"
        outage_worker.mark.delay(str(marked))
        assert wait_for(marked.exists, 40), log.read_text()[-3000:]
        assert "Unrecoverable" not in log.read_text()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
