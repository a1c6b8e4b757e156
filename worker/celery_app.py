"""The worker's Celery app: app/jobs.py's broker, queues and routes, with the tasks of
worker/tasks.py. Importing this module must not import torch.

Every worker also beats and reaps (worker/health.py) from the moment it is ready until it
shuts down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery.signals import setup_logging, worker_ready, worker_shutdown

from app.config import get_settings
from app.jobs import make_celery

if TYPE_CHECKING:
    from worker.health import Heartbeat

celery_app = make_celery(get_settings(), include=["worker.tasks"])


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: object) -> None:
    """Celery leaves logging to app/logs.py (`rankloop worker` has set it up already); a
    connected receiver also keeps Celery from swapping stdout and stderr for loggers."""
    from app import logs

    logs.setup_logging(level=loglevel or "INFO", libraries=True)


@worker_ready.connect
def _start_heartbeat(sender: object = None, **_: object) -> None:
    """Every worker (Redis or the embedded broker of `rankloop demo`) beats and, on the same
    thread, runs the reaper of stale rounds and sampling jobs (worker/reaper.py)."""
    from worker.health import start_heartbeat_thread

    hostname = getattr(sender, "hostname", "worker")
    queues = ",".join(sorted(q.name for q in celery_app.amqp.queues.consume_from.values()))
    _heartbeats.append(start_heartbeat_thread(hostname, queues))


@worker_shutdown.connect
def _stop_heartbeat(**_: object) -> None:
    for heartbeat in _heartbeats:
        heartbeat.stop()


_heartbeats: list[Heartbeat] = []
