"""A task limit shared by threads: the simulated annotators and a judge's worker threads each
take one slot before they lease, so together they never pass the limit."""

from __future__ import annotations

import threading


class TaskBudget:
    """A shared task limit (None = until the queue is empty), taken one task at a time."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        """Returns a slot taken for a task that was not leased after all."""
        with self._lock:
            if self._left is not None:
                self._left += 1

    @property
    def spent(self) -> bool:
        with self._lock:
            return self._left is not None and self._left <= 0
