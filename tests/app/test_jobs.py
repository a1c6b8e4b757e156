"""Work is sent by task name (app/jobs.py): every name is a task the worker registers, and each
lands on the queue its name routes to (on this run's broker: the filesystem one on SQLite,
Redis on PostgreSQL)."""

from __future__ import annotations

import pytest

from app import jobs
from app.health import queue_lengths

pytestmark = pytest.mark.db

NAMES = {value for key, value in vars(jobs).items() if key.isupper() and isinstance(value, str)}


def test_every_name_sent_is_a_task_of_the_worker() -> None:
    from worker.celery_app import celery_app

    celery_app.loader.import_default_modules()  # worker/tasks.py, as a starting worker does

    assert NAMES == {
        jobs.SAMPLING_PING,
        jobs.SAMPLING_RUN_JOB,
        jobs.SAMPLING_TOP_UP,
        jobs.SAMPLING_PREPARE_DEMO,
        jobs.RATINGS_RECOMPUTE,
        jobs.TRAINING_RUN_ROUND_STAGE,
        jobs.JUDGING_RUN,
    }
    assert NAMES <= set(celery_app.tasks)


@pytest.mark.parametrize(
    ("name", "queue", "lands_on"),
    [
        (jobs.TRAINING_RUN_ROUND_STAGE, None, "training"),
        (jobs.TRAINING_RUN_ROUND_STAGE, "sampling", "sampling"),
        (jobs.SAMPLING_TOP_UP, None, "sampling"),
        (jobs.RATINGS_RECOMPUTE, None, "sampling"),
        (jobs.JUDGING_RUN, None, "judging"),
    ],
)
def test_a_job_lands_on_the_queue_its_name_routes_to(
    name: str, queue: str | None, lands_on: str
) -> None:
    """No worker runs in this test, so the message stays queued (worker fixtures purge the
    queues before they start); its ids name nothing."""
    before = queue_lengths()
    assert before[lands_on] is not None  # the broker of this run answers

    jobs.enqueue(name, 0, queue=queue)

    after = queue_lengths()
    assert after[lands_on] == before[lands_on] + 1
    assert all(after[q] == before[q] for q in jobs.QUEUES if q != lands_on)
