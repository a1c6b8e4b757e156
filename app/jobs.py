"""Work for the workers, sent by task name: the web app never imports worker/ (nor torch).

The names below are the contract both sides import: worker/tasks.py registers its tasks under
them, and `enqueue` sends a message by name with Celery's `send_task`. Services send after the
request's transaction commits (`app.db.after_commit`), carrying ids only. The Celery
configuration (broker, queues, routes) lives here too; worker/celery_app.py builds the worker's
app from `make_celery`.

Embedded default: kombu's filesystem transport under <data_dir>/broker (no server). Production:
RANKLOOP_BROKER_URL=redis://... with separate `sampling`, `training` and `judging` workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from app.config import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

SAMPLING_PING = "sampling.ping"
SAMPLING_RUN_JOB = "sampling.run_job"
SAMPLING_TOP_UP = "sampling.top_up"
SAMPLING_PREPARE_DEMO = "sampling.prepare_demo"
RATINGS_RECOMPUTE = "ratings.recompute"
TRAINING_RUN_ROUND_STAGE = "training.run_round_stage"
JUDGING_RUN = "judging.run_judge"

QUEUES = ("sampling", "training", "judging")

# Training stages run for many minutes: the broker must not hand the same message to a second
# worker while the first is still on it (Redis redelivers after the visibility timeout).
VISIBILITY_TIMEOUT_SECONDS = 24 * 3600


def broker_url(settings: Settings) -> str:
    """The broker URL with a host: kombu warns "No hostname was supplied" on every connection
    to a bare `filesystem://` (the host means nothing to that transport)."""
    url = settings.effective_broker_url
    return "filesystem://localhost/" if url.rstrip("/") == "filesystem:" else url


def make_celery(
    settings: Settings, *, include: Sequence[str] = (), set_as_current: bool = True
) -> Celery:
    """A Celery app on the settings' broker with RankLoop's queues and routes; `include`: the
    task modules a worker imports."""
    from celery import Celery

    app = Celery(
        "rankloop",
        broker=broker_url(settings),
        include=list(include),
        set_as_current=set_as_current,
    )
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
            "judging.*": {"queue": "judging"},
        },
        worker_hijack_root_logger=False,
        # The filesystem transport has no fanout exchange for remote control.
        worker_enable_remote_control=not settings.effective_broker_url.startswith("filesystem"),
    )
    return app


@cache
def producer() -> Celery:
    """The process's sending app, built on first use. Not made Celery's current app: in a
    worker process (a task sending the next stage) the worker's own app stays current."""
    return make_celery(get_settings(), set_as_current=False)


def enqueue(
    name: str, *args: object, queue: str | None = None, countdown: float | None = None
) -> None:
    """Send task `name` with `args` (ids): to `queue`, else to the queue its name routes to;
    `countdown`: seconds before a worker may run it."""
    options: dict[str, object] = {}
    if queue is not None:
        options["queue"] = queue
    if countdown is not None:
        options["countdown"] = countdown
    producer().send_task(name, args=list(args), **options)
