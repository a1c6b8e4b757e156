"""Worker and queue health as the pages read it: which workers are alive, how long the queues
are.

Workers write a heartbeat row every HEARTBEAT_SECONDS from a background thread
(worker/health.py), so this works on every broker (the filesystem broker has no
remote-control channel to ask workers with).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope, utcnow
from app.jobs import QUEUES
from app.models import WorkerHeartbeat

HEARTBEAT_SECONDS = 15.0
LEASE_HOSTNAME = "lease:reaper"
"""The reaper's lease (worker/reaper.py) is a row of worker_heartbeats (queues: its holder;
last_seen_at: last renewal), which the worker list leaves out; an UPDATE takes it, so it works
on SQLite and PostgreSQL."""


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
        .where(WorkerHeartbeat.hostname != LEASE_HOSTNAME)
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
