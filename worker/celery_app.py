"""The Celery app and its routing. Importing this module must not import torch.

Embedded default: kombu's filesystem transport under <data_dir>/broker (no server). Production:
RANKLOOP_BROKER_URL=redis://... with separate `sampling` and `training` workers.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_ready, worker_shutdown

from app.config import Settings, get_settings

QUEUES = ("sampling", "training")

# Training stages run for many minutes: the broker must not hand the same message to a second
# worker while the first is still on it (Redis redelivers after the visibility timeout).
VISIBILITY_TIMEOUT_SECONDS = 24 * 3600


def broker_url(settings: Settings) -> str:
    """The broker URL with a host: kombu warns "No hostname was supplied" on every connection
    to a bare `filesystem://` (the host means nothing to that transport)."""
    url = settings.effective_broker_url
    return "filesystem://localhost/" if url.rstrip("/") == "filesystem:" else url


def make_celery(settings: Settings) -> Celery:
    app = Celery("rankloop", broker=broker_url(settings), include=["worker.tasks"])
    transport_options: dict[str, object] = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
    if settings.effective_broker_url.startswith("filesystem"):
        folder = settings.broker_folder
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "processed").mkdir(parents=True, exist_ok=True)
        transport_options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"),
            control_folder=str(folder / "control"),
            store_processed=False,
        )
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_default_queue="sampling",
        task_routes={
            "sampling.*": {"queue": "sampling"},
            "ratings.*": {"queue": "sampling"},
            "training.*": {"queue": "training"},
        },
        worker_hijack_root_logger=False,
        # The filesystem transport has no fanout exchange for remote control.
        worker_enable_remote_control=not settings.effective_broker_url.startswith("filesystem"),
    )
    return app


celery_app = make_celery(get_settings())


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
    _heartbeat_stop.append(start_heartbeat_thread(hostname, queues))


@worker_shutdown.connect
def _stop_heartbeat(**_: object) -> None:
    for stop in _heartbeat_stop:
        stop.set()


_heartbeat_stop: list[Any] = []
