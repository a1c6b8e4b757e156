"""Thin Celery tasks: load by id → call a plain function in worker/ → record the result.

Registered under the names of app/jobs.py, which the web app sends by name."""

from __future__ import annotations

from app import jobs
from worker.celery_app import celery_app


@celery_app.task(name=jobs.SAMPLING_PING)
def ping(marker_path: str) -> str:
    """Proves a worker consumes the queue (used by the health check and the tests)."""
    from pathlib import Path

    Path(marker_path).write_text("pong")
    return "pong"


@celery_app.task(name=jobs.SAMPLING_RUN_JOB, acks_late=True)
def run_sampling_job(job_id: int) -> int:
    """Idempotent: a redelivered job skips the prompts it already wrote."""
    from worker.jobs.sampling import run_sampling_job as run

    return run(job_id)


@celery_app.task(name=jobs.SAMPLING_TOP_UP)
def top_up_sampling(project_id: int) -> int | None:
    """Sent by a submit that left the project below its minimum of open tasks."""
    from worker.jobs.sampling import top_up

    return top_up(project_id)


@celery_app.task(name=jobs.SAMPLING_PREPARE_DEMO, acks_late=True)
def prepare_demo(project_id: int, job_id: int | None = None) -> None:
    """Build the tiny model if missing, then run the demo's sampling job (`rankloop demo`
    queued it; without one, a job is started)."""
    from worker.jobs.demo import prepare_demo_samples

    prepare_demo_samples(project_id, job_id=job_id)


@celery_app.task(name=jobs.RATINGS_RECOMPUTE, acks_late=True)
def recompute_ratings(project_id: int) -> bool:
    """Debounced: sent once per window by the first submit (countdown); a duplicate message
    finds the project's marker clear, or claimed by the run in progress, and does nothing."""
    from worker.jobs.ratings import recompute_if_dirty

    return recompute_if_dirty(project_id)


# Not acks_late: a training stage runs for many minutes and must never be redelivered to a
# second worker; if the worker dies, the reaper fails the round (its heartbeat goes stale).
@celery_app.task(name=jobs.TRAINING_RUN_ROUND_STAGE, acks_late=False)
def run_round_stage(round_id: int, stage: str) -> None:
    from app.rounds.service import send_stage
    from worker.jobs.rounds import run_stage

    next_stage = run_stage(round_id, stage)
    if next_stage is not None:
        send_stage(round_id, next_stage)


@celery_app.task(name=jobs.JUDGING_RUN, acks_late=True)
def run_judge(judge_id: int, unavailable_runs: int = 0) -> int:
    """Idempotent: a redelivered run leases only the tasks the judge has not ranked yet. An
    unavailable endpoint sends the run again later (the job pauses the judge if it repeats)."""
    from worker.jobs.judging import run_judge as run

    report = run(judge_id, unavailable_runs=unavailable_runs)
    if report.retry_in is not None:
        jobs.enqueue(jobs.JUDGING_RUN, judge_id, unavailable_runs + 1, countdown=report.retry_in)
    return report.ranked
