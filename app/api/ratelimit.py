"""Per-token request limit: a sliding window over the last 60 seconds.

With a Redis broker configured (production) the window lives in Redis, so every web process
and container counts against one limit (`RedisSlidingWindowLimiter`); without one it is kept
in this process (`SlidingWindowLimiter`), which is exact for the single process of the
embedded setup.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from app.errors import RateLimited

WINDOW_SECONDS = 60.0
log = logging.getLogger(__name__)


class Limiter(Protocol):
    def hit(self, key: int, *, limit: int) -> int: ...


def _refuse(limit: int, window: float, retry_after: float) -> RateLimited:
    retry = max(1, math.ceil(retry_after))
    return RateLimited(
        f"Rate limit of {limit} requests per minute reached for this token; retry in {retry} s",
        retry_after=retry,
        details={"limit": limit, "window_seconds": int(window)},
    )


class SlidingWindowLimiter:
    """A log of request times per key: exact (no burst at a window edge), O(limit) memory."""

    def __init__(
        self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: int, *, limit: int) -> int:
        """Count one request for `key`; returns how many remain, or raises RateLimited."""
        now = self.clock()
        with self._lock:
            self._forget_idle(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                raise _refuse(limit, self.window, hits[0] + self.window - now)
            hits.append(now)
            return limit - len(hits)

    def _forget_idle(self, now: float) -> None:
        """Drop keys with no request in the window so revoked tokens do not pile up."""
        if len(self._hits) < 1024:
            return
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]


# One atomic step per request: drop hits older than the window, refuse when `limit` remain,
# else log this one. Times are the Redis server's, so processes on several hosts agree.
_HIT_SCRIPT = """
local key, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {-1, tostring(tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {limit - count - 1, '0'}
"""


class RedisSlidingWindowLimiter:
    """The same sliding window, shared by every process that uses the same Redis and namespace.

    When Redis cannot be reached, requests are counted in this process instead for the next
    RETRY_SECONDS (a broken limiter must not take the API down with it, nor slow every
    request by a connection timeout)."""

    RETRY_SECONDS = 30.0

    def __init__(self, client: Any, namespace: str, window: float = WINDOW_SECONDS) -> None:
        self.client = client
        self.namespace = namespace
        self.window = window
        self._script = client.register_script(_HIT_SCRIPT)
        self._fallback = SlidingWindowLimiter(window=window)
        self._down_until = 0.0

    def hit(self, key: int, *, limit: int) -> int:
        import redis

        if time.monotonic() < self._down_until:
            return self._fallback.hit(key, limit=limit)
        try:
            remaining, retry_after = self._script(
                keys=[f"{self.namespace}:{key}"],
                args=[self.window, limit, uuid.uuid4().hex],
            )
        except redis.RedisError as exc:
            log.warning(
                "API rate limit kept in this process for %g s: Redis failed (%s)",
                self.RETRY_SECONDS,
                exc,
            )
            self._down_until = time.monotonic() + self.RETRY_SECONDS
            return self._fallback.hit(key, limit=limit)
        if int(remaining) < 0:
            raise _refuse(limit, self.window, float(retry_after))
        return int(remaining)


def make_limiter(broker_url: str, database_url: str) -> Limiter:
    """Redis-backed when the broker is Redis, else in this process. The key names a hash of
    the database URL: tokens are that database's ids, and two databases must not share them."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return SlidingWindowLimiter()
    import hashlib

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        broker_url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    database = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return RedisSlidingWindowLimiter(client, namespace=f"rankloop:api-rate:{database}")
