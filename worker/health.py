"""The worker's side of health: a heartbeat row every HEARTBEAT_SECONDS from a background
thread, which the pages read (app/health.py). The same thread runs the reaper
(worker/reaper.py) every REAP_SECONDS.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from app.db import session_scope, utcnow
from app.health import HEARTBEAT_SECONDS
from app.models import WorkerHeartbeat
from worker import reaper

logger = logging.getLogger(__name__)


def beat(hostname: str, queues: str) -> None:
    with session_scope() as session:
        row = session.get(WorkerHeartbeat, hostname)
        if row is None:
            session.add(WorkerHeartbeat(hostname=hostname, queues=queues))
        else:
            row.queues = queues
            row.last_seen_at = utcnow()


class Heartbeat:
    """The heartbeat thread and its stop: `stop()` waits for the thread's last database work
    (giving up the reaper's lease), so nothing runs on it while the interpreter exits (a thread
    still opening connections then races `weakref.finalize`'s exit hook)."""

    JOIN_SECONDS = 15.0

    def __init__(self, thread: threading.Thread, event: threading.Event) -> None:
        self.thread = thread
        self.event = event

    def stop(self) -> None:
        self.event.set()
        if self.thread is not threading.current_thread():
            self.thread.join(self.JOIN_SECONDS)


def start_heartbeat_thread(hostname: str, queues: str, *, reap: bool = True) -> Heartbeat:
    """Beat, and reap stale rounds and sampling jobs, until the returned heartbeat is stopped
    (the worker shuts down)."""
    stop = threading.Event()
    holder = reaper.holder_name(hostname)

    def loop() -> None:
        next_reap = time.monotonic()
        while not stop.is_set():
            try:
                beat(hostname, queues)
            except Exception:  # a database hiccup must not kill the worker  # noqa: S110
                pass
            if reap and time.monotonic() >= next_reap:
                next_reap = time.monotonic() + reaper.REAP_SECONDS
                try:
                    reaper.tick(holder)
                except Exception:  # nor a failed pass: the next one tries again
                    logger.warning("the reaper's pass failed", exc_info=True)
            stop.wait(HEARTBEAT_SECONDS)
        if reap:
            try:
                reaper.give_up_lease(holder)
            except Exception:  # shutting down: the lease simply runs out  # noqa: S110
                pass

    thread = threading.Thread(target=loop, name="rankloop-heartbeat", daemon=True)
    thread.start()
    return Heartbeat(thread, stop)


def default_hostname(queues: str) -> str:
    return f"rankloop-{queues.replace(',', '-')}@{socket.gethostname()}"
