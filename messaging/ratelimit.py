"""Per-sender pacing shared by every dispatcher process: a token schedule in Redis (Lua).

Celery's own rate limits are per worker, so N workers would send N times too fast. Here each
send reserves the next free slot of its sender in one atomic Lua call (the generic cell rate
algorithm with no burst): slots are exactly 1/MPS apart on Redis's own clock, so no second
ever holds more than MPS sends, whatever the number of workers. The caller sleeps until its
slot.
"""

from __future__ import annotations

import os
import threading
import time
from functools import cache

import redis
from django.conf import settings

# KEYS[1]: the sender's schedule. ARGV[1]: microseconds between sends. Returns the reserved
# slot as microseconds on the Redis clock and the Redis clock now.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
-- A slot nobody took (every sender busy) may be taken a little late, so the rate catches up;
-- the window cap below keeps any second from holding more than MPS all the same.
local slot = math.max(tat, now - tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%d', slot + interval), 'PX',
           math.max(math.floor((slot - now + interval) / 1000), 0) + 1000)
return {string.format('%d', slot), string.format('%d', now)}
"""


# Slots that may be caught up on after a hold-up.
CATCH_UP = 3


@cache
def redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per process, shared by the messaging app."""
    return redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)


@cache
def _script(url: str):
    return redis_client(url).register_script(RESERVE)


def reserve(sender_key: str, mps: float) -> float:
    """Reserve the sender's next slot; returns how many seconds to wait for it (≥ 0)."""
    interval_us = max(1, round(1_000_000 / mps))
    slot, now = _script(settings.REDIS_URL)(
        keys=[f"loyaltysms:mps:{sender_key}"], args=[interval_us, CATCH_UP * interval_us]
    )
    return max(0.0, (int(slot) - int(now)) / 1_000_000)


def wait_for_slot(sender_key: str, mps: float) -> float:
    """Sleep until the sender's next slot; returns the slot as time.monotonic()."""
    delay = reserve(sender_key, mps)
    slot = time.monotonic() + delay
    if delay > 0:
        time.sleep(delay)
    return slot


# The hard cap: at most ARGV[1] sends in any window of ARGV[2] microseconds, on Redis's clock.
# KEYS[1]: a sorted set of recent send times. Returns 0 (recorded: go) or the microseconds
# until the oldest send leaves the window.
WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
    return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now + 1
"""
# A little over a second, so that delays between here and the carrier (a few ms) don't put
# two windows' sends into one of the carrier's seconds; 0.5 % of the rate is the price.
WINDOW_US = 1_005_000


@cache
def _window_script(url: str):
    return redis_client(url).register_script(WINDOW)


def wait_for_window(sender_key: str, mps: float) -> None:
    """Wait until fewer than `mps` sends of this sender fell in the last second, and count
    this one: the cap holds whatever the schedule above it did (threads held up after their
    slot would otherwise crowd one second)."""
    limit = max(1, int(mps))
    token = f"{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
    script = _window_script(settings.REDIS_URL)
    while True:
        wait_us = script(keys=[f"loyaltysms:window:{sender_key}"], args=[limit, WINDOW_US, token])
        if int(wait_us) <= 0:
            return
        time.sleep(int(wait_us) / 1_000_000)
