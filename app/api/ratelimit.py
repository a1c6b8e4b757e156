"""Per-token request limit: a sliding window over the last 60 seconds, kept in this process.

With several web processes each keeps its own window, so the effective limit is the setting
times the number of processes; put the limit in a shared store if that ever matters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from app.errors import RateLimited

WINDOW_SECONDS = 60.0


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
                retry_after = max(1, math.ceil(hits[0] + self.window - now))
                raise RateLimited(
                    f"Rate limit of {limit} requests per minute reached for this token; "
                    f"retry in {retry_after} s",
                    retry_after=retry_after,
                    details={"limit": limit, "window_seconds": int(self.window)},
                )
            hits.append(now)
            return limit - len(hits)

    def _forget_idle(self, now: float) -> None:
        """Drop keys with no request in the window so revoked tokens do not pile up."""
        if len(self._hits) < 1024:
            return
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]
