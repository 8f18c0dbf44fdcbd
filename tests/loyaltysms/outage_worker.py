"""A Celery app of the broker test's own (tests/loyaltysms/test_broker.py): one task that
takes a few seconds, one that leaves a mark, and the product's broker transport."""

import os
import time
from pathlib import Path

from celery import Celery

import loyaltysms.celery  # noqa: F401 - installs the product's Redis transport

# The worker's from its environment; the test sets the sender's own.
app = Celery("outage_worker", broker=os.environ.get("OUTAGE_BROKER_URL"))
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False


@app.task
def busy(seconds: float) -> None:
    time.sleep(seconds)


@app.task
def mark(path: str) -> None:
    Path(path).write_text("done")
