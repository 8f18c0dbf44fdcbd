"""Rate limits counted in the Redis cache: the REST API's per-brand limit, and the rule every
such limit follows while the cache can't be reached.

Kept apart from the views: DRF imports its DEFAULT_THROTTLE_CLASSES while
`rest_framework.views` is still loading, so this module must not import DRF views.
"""

from __future__ import annotations

import functools
import hmac
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from loyaltysms.models import ApiKey
from loyaltysms.selectors import api_key_prefix
from loyaltysms.services import hash_secret

logger = logging.getLogger(__name__)


def let_through_while_cache_down(allow_request):
    """For a throttle's allow_request(): while the Redis cache can't be reached the request is
    let through, and logged. A rate limit slows a client down; the API and the storefront must
    not go down with the cache (the cache's client gives up within about two seconds)."""

    @functools.wraps(allow_request)
    def allow_request_or_let_through(self, request, view) -> bool:
        try:
            return allow_request(self, request, view)
        except RedisError as exc:
            logger.warning(
                "rate limit skipped: no cache",
                extra={"throttle": type(self).__name__, "error": str(exc)},
            )
            return True

    return allow_request_or_let_through


# A token bucket kept as GCRA (the generic cell rate algorithm): one key per brand holding the
# "theoretical arrival time" of its next request, in microseconds of Redis's own clock (so web
# servers' clocks don't matter). Atomic and one round trip, however many workers count at once.
# KEYS[1]: the brand's bucket. ARGV[1]: microseconds between requests at the sustained rate;
# ARGV[2]: the burst (requests a full bucket lets through at once); ARGV[3]: 1 to take one
# request from the bucket, 0 only to look whether it could.
# Returns {allowed (1/0), requests left now, microseconds until the next one is allowed}.
TOKEN_BUCKET = b"""
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
    tat = now
end
local next_tat = tat + interval
local allow_at = next_tat - interval * burst
if now < allow_at then
    return {0, 0, allow_at - now}
end
if ARGV[3] == '0' then
    return {1, math.floor((now - allow_at) / interval) + 1, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
           math.ceil((next_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0}
"""
# The script's SHA is computed once; each call is an EVALSHA on the cache's own connection pool
# (the script is loaded on the first call a Redis server hasn't seen).
_token_bucket = Script(None, TOKEN_BUCKET)


@dataclass(frozen=True)
class RateLimit:
    """What a request learnt about its brand's bucket (the X-RateLimit-* headers)."""

    burst: int
    remaining: int
    refused: bool = False


def api_rate_for(tenant) -> tuple[float, int]:
    """The brand's REST API limit: (sustained requests a second, burst)."""
    rate = tenant.api_rate_per_second or settings.API_RATE_PER_SECOND
    burst = tenant.api_rate_burst or settings.API_RATE_BURST
    return rate, burst


def _draw(tenant_id: int, rate: float, burst: int, *, take: bool = True) -> tuple[bool, int, float]:
    """One request from the brand's bucket, or (take=False) only whether there is one:
    (allowed, requests left, seconds to wait)."""
    key = cache.make_and_validate_key(f"throttle:{BrandRateThrottle.scope}:{tenant_id}")
    # Django's Redis cache has no public way to run a script; its client is the one with
    # the timeouts that keep a dead or hung cache from holding the request.
    client = cache._cache.get_client(key, write=True)
    allowed, remaining, wait_us = _token_bucket(
        keys=[key], args=[max(1, round(1_000_000 / rate)), burst, int(take)], client=client
    )
    return bool(allowed), remaining, wait_us / 1_000_000


# Keys this process authenticated lately: prefix → (key hash, brand, rate, burst, until when).
# A brand this process refused lately is then refused before its key's row is read while it
# stays over its limit, so a flood of refused requests costs the database nothing and the
# other brands' requests little (a brand under its limit pays nothing more). Nothing is taken
# from a bucket before the key is authenticated from the database, as always; only a refusal
# relies on this memory, which follows a revoked key or a changed limit within
# KEY_MEMORY_SECONDS.
KEY_MEMORY_SECONDS = 10.0
KEY_MEMORY_SIZE = 10_000
_known_keys: dict[str, tuple[str, int, float, int, float]] = {}


def remember_key(api_key: ApiKey) -> None:
    """Called once a key is authenticated from the database."""
    if len(_known_keys) >= KEY_MEMORY_SIZE:
        _known_keys.clear()
    rate, burst = api_rate_for(api_key.tenant)
    until = time.monotonic() + KEY_MEMORY_SECONDS
    _known_keys[api_key.prefix] = (api_key.key_hash, api_key.tenant_id, rate, burst, until)


def forget_keys() -> None:
    """Drop what this process remembers of keys and refusals."""
    _known_keys.clear()
    _refusals.clear()
    _refused_at.clear()


def refuse_over_limit(request, raw_key: str) -> None:
    """Before authentication reads the key: when this process knows the key's brand (above),
    refused it in the last KEY_MEMORY_SECONDS and the secret matches, raise Throttled if the
    brand's bucket is still empty. Takes nothing from it (the throttle does, once the key is
    authenticated)."""
    known = _known_keys.get(api_key_prefix(raw_key) or "")
    if known is None:
        return
    key_hash, tenant_id, rate, burst, until = known
    now = time.monotonic()
    if now > until or now - _refused_at.get(tenant_id, -KEY_MEMORY_SECONDS) > KEY_MEMORY_SECONDS:
        return
    if not hmac.compare_digest(key_hash, hash_secret(raw_key)):
        return
    try:
        allowed, _, wait = _draw(tenant_id, rate, burst, take=False)
    except RedisError as exc:
        # Let through, as the throttle would; it isn't asked again (one cache timeout a
        # request while the cache hangs, not two).
        logger.warning(
            "rate limit skipped: no cache",
            extra={"throttle": BrandRateThrottle.__name__, "error": str(exc)},
        )
        request.rate_limit_skipped = True
        return
    if not allowed:
        request.rate_limit = RateLimit(burst=burst, remaining=0, refused=True)
        note_refusal(tenant_id)
        raise exceptions.Throttled(wait)


# Refusals are not logged one by one (a flood would flood the log): a brand's first in this
# process, then, at its next refusal REFUSALS_LOG_SECONDS or more after a line, how many since
# that line and over how long.
REFUSALS_LOG_SECONDS = 60.0
_refusals: dict[int, list] = {}  # brand → [refused since the last line, when that line was]
_refusals_lock = threading.Lock()
_refused_at: dict[int, float] = {}  # brand → when this process last refused it


def note_refusal(tenant_id: int) -> None:
    now = time.monotonic()
    _refused_at[tenant_id] = now
    with _refusals_lock:
        seen = _refusals.get(tenant_id)
        if seen is not None and now - seen[1] < REFUSALS_LOG_SECONDS:
            seen[0] += 1
            return
        if len(_refusals) >= KEY_MEMORY_SIZE:
            _refusals.clear()
            _refused_at.clear()
        _refusals[tenant_id] = [0, now]
    refused, seconds = (1, 0.0) if seen is None else (seen[0] + 1, now - seen[1])
    logger.warning(
        "brand over its API rate limit",
        extra={"tenant": tenant_id, "refused": refused, "seconds": round(seconds)},
    )


class BrandRateThrottle(BaseThrottle):
    """The REST API's per-brand limit: every request made with any of a brand's API keys draws
    from one token bucket for the brand, refilled at API_RATE_PER_SECOND and holding at most
    API_RATE_BURST (Tenant.api_rate_per_second / api_rate_burst override both). Beyond it DRF
    answers 429 with Retry-After before the view runs: no serializer, no write.

    Not DRF's SimpleRateThrottle: it reads the history of timestamps and writes it back (two
    round trips, and concurrent workers overwrite each other's counts, as DRF's docs warn), it
    stores one timestamp per request in the window, and its rate is fixed per class while here
    it depends on the brand. Requests without an API key (the dashboard's session, the widget,
    the webhooks) are not counted here."""

    scope = "api"

    def __init__(self):
        self.retry_after: float | None = None

    @let_through_while_cache_down
    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        if getattr(request, "rate_limit_skipped", False):
            return True  # the cache failed already, before authentication (refuse_over_limit)
        rate, burst = api_rate_for(api_key.tenant)
        allowed, remaining, wait = _draw(api_key.tenant_id, rate, burst)
        request.rate_limit = RateLimit(burst=burst, remaining=remaining, refused=not allowed)
        if allowed:
            return True
        note_refusal(api_key.tenant_id)
        self.retry_after = wait
        return False

    def wait(self) -> float | None:
        return self.retry_after
