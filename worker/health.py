"""Worker and queue health for the admin pages: which workers are alive, how long the queues are.

Workers write a heartbeat row every HEARTBEAT_SECONDS from a background thread, so this works
on every broker (the filesystem broker has no remote-control channel to ask workers with). The
same thread runs the reaper (worker/reaper.py) every REAP_SECONDS.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope, utcnow
from app.models import WorkerHeartbeat
from worker import reaper

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0


def beat(hostname: str, queues: str) -> None:
    with session_scope() as session:
        row = session.get(WorkerHeartbeat, hostname)
        if row is None:
            session.add(WorkerHeartbeat(hostname=hostname, queues=queues))
        else:
            row.queues = queues
            row.last_seen_at = utcnow()


def start_heartbeat_thread(hostname: str, queues: str, *, reap: bool = True) -> threading.Event:
    """Beat, and reap stale rounds and sampling jobs, until the returned event is set (the
    worker shuts down)."""
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

    threading.Thread(target=loop, name="rankloop-heartbeat", daemon=True).start()
    return stop


@dataclass(frozen=True)
class WorkerStatus:
    hostname: str
    queues: str
    last_seen_at: datetime
    alive: bool


def worker_statuses(session: Session) -> list[WorkerStatus]:
    cutoff = utcnow() - timedelta(seconds=HEARTBEAT_SECONDS * 4)
    rows = session.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.hostname != reaper.LEASE_HOSTNAME)
        .order_by(WorkerHeartbeat.hostname)
    )
    return [
        WorkerStatus(r.hostname, r.queues, r.last_seen_at, r.last_seen_at >= cutoff) for r in rows
    ]


def heartbeat_is_fresh(hostname: str) -> bool:
    """Whether the worker `hostname` beat recently (as `worker_statuses` counts alive)."""
    cutoff = utcnow() - timedelta(seconds=HEARTBEAT_SECONDS * 4)
    with session_scope(readonly=True) as session:
        row = session.get(WorkerHeartbeat, hostname)
        return row is not None and row.last_seen_at >= cutoff


def queue_lengths() -> dict[str, int | None]:
    """Messages waiting per queue (None when the broker cannot be asked)."""
    from worker.celery_app import QUEUES

    settings = get_settings()
    url = settings.effective_broker_url
    try:
        if url.startswith("filesystem"):
            folder = Path(settings.broker_folder) / "queue"
            names = [p.name for p in folder.iterdir()] if folder.exists() else []
            return {q: sum(n.endswith(f".{q}.msg") for n in names) for q in QUEUES}
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2)
            return {q: int(client.llen(q)) for q in QUEUES}
    except Exception:  # health pages must render even when the broker is down
        return dict.fromkeys(QUEUES)
    return dict.fromkeys(QUEUES)


def default_hostname(queues: str) -> str:
    return f"rankloop-{queues.replace(',', '-')}@{socket.gethostname()}"
