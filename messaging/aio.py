"""One asyncio event loop per process, in a thread of its own, for carrier requests.

Waiting on a carrier's answer costs nothing on an event loop, where a thread per request costs
a thread switch and its share of the interpreter lock; a batch of texts is sent on the loop
while the calling thread (with its database connection and transaction) waits for the
outcomes. Nothing on the loop touches the database: a batch's hand-over marks are written
from a thread of their own (messaging.handover), awaited by the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def loop() -> asyncio.AbstractEventLoop:
    """The process's loop, started on first use (and again in a forked child)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="carrier-loop", daemon=True).start()
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the process's loop and wait for its result (from any other thread)."""
    return asyncio.run_coroutine_threadsafe(coroutine, loop()).result()
