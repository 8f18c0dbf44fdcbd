# ruff: noqa: S603 - our own command lines
"""Processes the chaos tests start and kill: Celery workers, each in a process group of its
own so that kill -9 reaches the main process and every child it forked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every queue but the outgoing webhooks' (chaos brands have no endpoints).
QUEUES = "default,events,dispatch,webhooks,scans"


class Workers:
    """The Celery worker we run (a process group of its own), killed and restarted by it."""

    def __init__(self, env: dict, logdir: Path, *, queues: str = QUEUES, name: str = "worker"):
        self.env, self.logdir, self.queues, self.name = env, logdir, queues, name
        self.process: subprocess.Popen | None = None
        self.kills = 0
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"{self.name}-{self.starts}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "loyaltysms",
                "worker",
                "-Q",
                self.queues,
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
                "-n",
                f"{self.name}{self.starts}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the main process and its children
        )

    def kill(self) -> None:
        """kill -9 the worker and every child it forked (the group we started)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        stop_group(self.process)
        self.process = None


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (a warm shutdown), SIGKILL after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
