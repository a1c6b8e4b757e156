"""The API rate limit with a Redis broker: one window for every web process (`--workers 2`, and
several containers), so the limit is the setting and not the setting times the processes."""

from __future__ import annotations

import secrets
import socket
import time

import pytest
import redis

from app.api.ratelimit import (
    RedisSlidingWindowLimiter,
    SlidingWindowLimiter,
    make_limiter,
)
from app.errors import RateLimited
from tests.conftest import REDIS_URL


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis here (.ci/run starts it)")


@needs_redis
def test_two_processes_share_one_window() -> None:
    namespace = f"rankloop:test-rate:{secrets.token_hex(4)}"
    first = RedisSlidingWindowLimiter(redis.Redis.from_url(REDIS_URL), namespace)
    second = RedisSlidingWindowLimiter(redis.Redis.from_url(REDIS_URL), namespace)
    assert first.hit(1, limit=3) == 2
    assert second.hit(1, limit=3) == 1
    assert first.hit(1, limit=3) == 0
    with pytest.raises(RateLimited) as refused:
        second.hit(1, limit=3)
    assert 1 <= refused.value.retry_after <= 60
    assert second.hit(2, limit=3) == 2  # per token
    other = RedisSlidingWindowLimiter(redis.Redis.from_url(REDIS_URL), namespace + "-other")
    assert other.hit(1, limit=3) == 2  # another database's token 1 is another token


@needs_redis
def test_the_window_slides_in_redis() -> None:
    namespace = f"rankloop:test-rate:{secrets.token_hex(4)}"
    limiter = RedisSlidingWindowLimiter(redis.Redis.from_url(REDIS_URL), namespace, window=0.5)
    limiter.hit(1, limit=1)
    with pytest.raises(RateLimited):
        limiter.hit(1, limit=1)
    time.sleep(0.6)
    assert limiter.hit(1, limit=1) == 0


def test_without_redis_the_limit_is_kept_in_the_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = make_limiter(f"redis://127.0.0.1:{port}/0", "postgresql+psycopg://u@db/a")
    assert isinstance(limiter, RedisSlidingWindowLimiter)
    started = time.monotonic()
    assert limiter.hit(1, limit=2) == 1
    assert limiter.hit(1, limit=2) == 0
    with pytest.raises(RateLimited):
        limiter.hit(1, limit=2)
    assert time.monotonic() - started < 3, "each request waits for Redis"


def test_the_broker_decides_where_the_window_lives() -> None:
    assert isinstance(make_limiter("filesystem://", "sqlite:///x.db"), SlidingWindowLimiter)
    shared = make_limiter("redis://127.0.0.1:6379/0", "postgresql+psycopg://u@db/a")
    assert isinstance(shared, RedisSlidingWindowLimiter)
    other = make_limiter("redis://127.0.0.1:6379/0", "postgresql+psycopg://u@db/b")
    assert isinstance(other, RedisSlidingWindowLimiter)
    assert shared.namespace != other.namespace
