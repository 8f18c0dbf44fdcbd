"""Per-sender pacing: one dispatcher process serves a sender at a time, and paces it itself.

Celery's own rate limits are per worker, so N workers would send N times too fast. Instead a
dispatcher holds the sender's **lease** (a Redis key with a token and a time to live) while it
sends for it; other dispatchers serve other senders. The holder's `Pacer` spaces the sends
WINDOW/MPS apart and never lets more than MPS of them leave in any window of a little over a
second. A lease that changes hands passes the last second of send times along, so the next
holder's first second can't crowd the previous holder's last one. A holder that dies loses its
lease after LEASE_TTL; its sends are long out of any window by then.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import cache

import redis
from django.conf import settings

# Seconds a lease lives unless renewed; a holder renews it with every batch it claims.
LEASE_TTL = 30.0
# A little over a second, so that delays between here and the carrier (up to 10 ms) don't put
# two windows' sends into one of the carrier's seconds; 1 % of the rate is the price.
WINDOW = 1.01
# How far behind a new batch's first slot may be (a slow claim, a busy CPU): up to three
# slots, and never more than 50 ms, so a slow sender's texts don't leave in bunches.
CATCH_UP_SLOTS = 3
CATCH_UP_SECONDS = 0.05


@cache
def redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per process, shared by the messaging app."""
    return redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)


def _redis() -> redis.Redis:
    return redis_client(settings.REDIS_URL)


# KEYS[1]: the lease. ARGV[1]: the holder's token. ARGV[2]: milliseconds to live.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1]: the lease, KEYS[2]: the sender's recent send times. ARGV[1]: the token, ARGV[2]:
# the send times (JSON, unix seconds).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', 5000)
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class SenderLease:
    """The right to send for one sender, held by one dispatcher at a time."""

    def __init__(self, sender_id: int):
        self.key = f"loyaltysms:lease:sender:{sender_id}"
        self.recent_key = f"loyaltysms:recent:sender:{sender_id}"
        self.token = secrets.token_hex(8)
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(_redis().set(self.key, self.token, nx=True, px=int(LEASE_TTL * 1000)))
        return self.held

    def renew(self) -> bool:
        self.held = bool(_redis().eval(RENEW, 1, self.key, self.token, int(LEASE_TTL * 1000)))
        return self.held

    def recent_sends(self) -> list[float]:
        """The previous holder's send times of its last second (unix seconds)."""
        raw = _redis().get(self.recent_key)
        return json.loads(raw) if raw else []

    def release(self, recent: list[float]) -> None:
        if self.held:
            _redis().eval(RELEASE, 2, self.key, self.recent_key, self.token, json.dumps(recent))
            self.held = False


class Pacer:
    """The send times of one sender in its lease holder's process (used on one event loop).

    `reserve(n)` hands out the next n slots, WINDOW/MPS apart; `until(slot)` waits for a slot,
    for the window cap (at most MPS sends in any WINDOW seconds) and for a free request (at
    most `concurrency` in flight), and records the send; `finished()` frees its request. Slots
    are handed out in order to every batch that asks, so several batches of one sender can be
    claimed and locked ahead while the current one sends, without gaps in the pace.
    """

    def __init__(self, mps: float, recent: list[float] = (), *, concurrency: int | None = None):
        self.limit = max(1, int(mps))
        # Requests the carrier takes at once: a send waits here for one to finish rather than
        # in the HTTP client's queue, from which late sends would leave together.
        self.concurrency = concurrency
        self.in_flight = 0
        self._finished = asyncio.Event()
        # Spaced so that a window never holds more than `limit` slots: the cap below then
        # only acts after a hold-up, when late sends would otherwise crowd together.
        self.interval = WINDOW / max(mps, 0.001)
        # Send times on the wall clock (shared by processes on one host; passed with a lease).
        now = time.time()
        self.sent: deque[float] = deque(
            (t for t in sorted(recent)[-self.limit :] if t > now - WINDOW), maxlen=self.limit
        )
        self.next_slot = 0.0

    def reserve(self, count: int) -> list[float]:
        """The next `count` slots (time.time() values)."""
        behind = min(CATCH_UP_SLOTS * self.interval, CATCH_UP_SECONDS)
        start = max(self.next_slot, time.time() - behind)
        self.next_slot = start + count * self.interval
        return [start + i * self.interval for i in range(count)]

    async def until(
        self, slot: float, prepare: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Wait for the slot; then, if given, await `prepare()` (work that must be done before
        the send, e.g. recording it; an exception from it ends the wait, nothing recorded) and
        check the window cap again, so the send time recorded is the real one."""
        while True:
            now = time.time()
            if slot > now:
                await asyncio.sleep(slot - now)
                continue
            if len(self.sent) >= self.limit and now - self.sent[0] < WINDOW:
                await asyncio.sleep(self.sent[0] + WINDOW - now)
                continue
            if self.concurrency is not None and self.in_flight >= self.concurrency:
                self._finished.clear()
                await self._finished.wait()
                continue
            if prepare is not None:
                await prepare()
                prepare = None
                continue
            self.sent.append(now)
            self.in_flight += 1
            return

    def finished(self) -> None:
        """A request that `until` let go has its answer (or failed)."""
        self.in_flight -= 1
        self._finished.set()

    def recent(self) -> list[float]:
        """This holder's send times of the last window, to pass on with the lease."""
        cutoff = time.time() - WINDOW
        return [t for t in self.sent if t > cutoff]
