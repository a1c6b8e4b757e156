"""The queue refills itself: a submit that leaves fewer open tasks than the project's minimum
makes a worker sample more prompts, one job at a time, past a job whose worker died."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation import service as annotation
from app.annotation.schemas import SubmitRanking
from app.config import get_settings
from app.db import utcnow
from app.models import JobState, RankingTask, SamplingJob, TaskStatus
from app.projects.service import add_member, add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase, wait_until
from tests.factories import make_project, make_task, make_user
from worker.jobs.sampling import run_sampling_job


def _prompts(session: Session, project_id: int, n: int) -> None:
    add_prompts(session, project_id=project_id, contents=[f"Refill prompt {i}?" for i in range(n)])


def test_a_project_below_its_minimum_gets_one_job_for_prompts_without_tasks(
    db_session: Session,
) -> None:
    project = make_project(db_session, min_open_tasks=5)
    _prompts(db_session, project.id, 3)

    job = service.top_up_if_needed(db_session, project_id=project.id)

    assert job is not None
    assert job.prompts_total == 3
    assert service.top_up_if_needed(db_session, project_id=project.id) is None  # one at a time


def test_a_project_with_enough_open_tasks_is_left_alone(db_session: Session) -> None:
    project = make_project(db_session, min_open_tasks=2)
    for _ in range(2):
        make_task(db_session, project)
    _prompts(db_session, project.id, 3)

    assert service.top_up_if_needed(db_session, project_id=project.id) is None


def test_a_running_job_whose_worker_died_is_failed_and_replaced(db_session: Session) -> None:
    project = make_project(db_session, min_open_tasks=5)
    _prompts(db_session, project.id, 3)
    dead = service.top_up_if_needed(db_session, project_id=project.id)
    assert dead is not None
    timeout = get_settings().heartbeat_timeout_seconds
    dead.state = JobState.running
    dead.heartbeat_at = utcnow() - timedelta(seconds=timeout + 60)
    db_session.flush()

    replacement = service.top_up_if_needed(db_session, project_id=project.id)

    assert replacement is not None
    assert replacement.id != dead.id
    assert dead.state == JobState.failed
    assert "stopped responding" in (dead.error or "")


def test_a_live_running_job_is_not_replaced(db_session: Session) -> None:
    project = make_project(db_session, min_open_tasks=5)
    _prompts(db_session, project.id, 3)
    running = service.top_up_if_needed(db_session, project_id=project.id)
    assert running is not None
    running.state = JobState.running
    running.heartbeat_at = utcnow()
    db_session.flush()

    assert service.top_up_if_needed(db_session, project_id=project.id) is None
    assert running.state == JobState.running


def _task_counts(db: FreshDatabase, project_id: int) -> tuple[int, int]:
    with db.session() as session:
        total = session.scalar(select(func.count()).where(RankingTask.project_id == project_id))
        open_ = session.scalar(
            select(func.count()).where(
                RankingTask.project_id == project_id, RankingTask.status == TaskStatus.open
            )
        )
        return int(total or 0), int(open_ or 0)


def test_a_submit_below_the_minimum_makes_the_worker_sample_more(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    worker_process: subprocess.Popen[bytes],
) -> None:
    with app_database.session() as session:
        project = make_project(
            session,
            base_model=str(tiny_model_path),
            samples_per_prompt=4,
            max_new_tokens=6,
            annotations_per_task=1,
            min_open_tasks=2,
        )
        _prompts(session, project.id, 5)
        user = make_user(session, username="refiller")
        add_member(session, project_id=project.id, user_id=user.id)
        first = service.start_sampling(
            session, project_id=project.id, prompt_limit=2, enqueue=False
        )
        assert first is not None
        session.commit()
        project_id, user_id, first_id = project.id, user.id, first.id
    run_sampling_job(first_id)
    assert _task_counts(app_database, project_id) == (2, 2)

    with app_database.session() as session:  # what the ranking page's submit does
        shown = annotation.next_task(session, user_id=user_id, chosen_project_id=project_id)
        assert shown.task is not None
        groups = [[s.id] for s in shown.task.samples]
        annotation.submit_ranking(
            session,
            task_id=shown.task.id,
            user_id=user_id,
            submission=SubmitRanking.parse({"groups": groups}),
        )
        session.commit()  # 1 open task < 2: the top-up is sent after this commit

    wait_until(lambda: _task_counts(app_database, project_id)[0] == 5, 120, "the refill")
    assert _task_counts(app_database, project_id) == (5, 4)
    # The job commits its last tasks, then (a moment later) its end.
    wait_until(lambda: _jobs_finished(app_database, project_id), 60, "the refill's end")
    with app_database.session() as session:
        jobs = session.scalars(
            select(SamplingJob).where(SamplingJob.project_id == project_id).order_by(SamplingJob.id)
        ).all()
        assert [(j.prompts_total, j.state) for j in jobs] == [
            (2, JobState.done),
            (3, JobState.done),
        ]
    assert worker_process.poll() is None


def _jobs_finished(db: FreshDatabase, project_id: int) -> bool:
    with db.session() as session:
        states = session.scalars(
            select(SamplingJob.state).where(SamplingJob.project_id == project_id)
        )
        return all(state not in (JobState.queued, JobState.running) for state in states)


def test_a_second_job_leaves_out_the_prompts_a_live_job_holds(db_session: Session) -> None:
    """A round's sampling after a top-up (or two top-ups): each prompt is generated once."""
    project = make_project(db_session, min_open_tasks=5)
    _prompts(db_session, project.id, 5)
    first = service.start_sampling(db_session, project_id=project.id, prompt_limit=2, enqueue=False)
    assert first is not None

    second = service.start_sampling(db_session, project_id=project.id, enqueue=False)

    assert second is not None
    assert not set(first.prompt_ids) & set(second.prompt_ids)
    assert len(first.prompt_ids) + len(second.prompt_ids) == 5
    assert service.start_sampling(db_session, project_id=project.id, enqueue=False) is None
