"""A failing automatic top-up backs off (doubling) instead of starting a failing job at every
submit; and changing max new tokens marks the measured prompts too long again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import JobState, Prompt, SamplingJob
from app.projects.service import add_prompts, update_project
from app.sampling import service
from tests.factories import make_project, make_task

# Automatic top-ups back off after failures --------------------------------------------------


def _failed_job(session: Session, project_id: int, minutes_ago: float) -> None:
    job = service.start_sampling(session, project_id=project_id, enqueue=False)
    assert job is not None
    job.state = JobState.failed
    job.finished_at = utcnow() - timedelta(minutes=minutes_ago)
    session.flush()


def test_a_failing_top_up_backs_off_doubling_instead_of_refiring_at_every_submit(
    db_session: Session,
) -> None:
    project = make_project(db_session, min_open_tasks=5)
    add_prompts(db_session, project_id=project.id, contents=["One?", "Two?"])

    _failed_job(db_session, project.id, minutes_ago=0.5)
    assert service.top_up_if_needed(db_session, project_id=project.id) is None
    assert service.top_up_if_needed(db_session, project_id=project.id) is None  # next submit

    # Two failures in a row: 2 min, then 4 min after the last one.
    _failed_job(db_session, project.id, minutes_ago=3)
    assert service.top_up_if_needed(db_session, project_id=project.id) is None
    resumes = service.top_up_resumes_at(db_session, project_id=project.id)
    assert resumes is not None
    assert timedelta(seconds=50) < resumes - utcnow() < timedelta(seconds=70)

    _failed_job(db_session, project.id, minutes_ago=0)
    latest = db_session.scalars(select(SamplingJob).order_by(SamplingJob.id.desc()).limit(1)).one()
    latest.finished_at = utcnow() - timedelta(minutes=9)  # three failures: 8 min
    db_session.flush()
    job = service.top_up_if_needed(db_session, project_id=project.id)
    assert job is not None  # time's up: try again


def test_sample_more_by_hand_does_not_wait(db_session: Session) -> None:
    project = make_project(db_session, min_open_tasks=5)
    add_prompts(db_session, project_id=project.id, contents=["One?", "Two?"])
    _failed_job(db_session, project.id, minutes_ago=0)

    assert service.top_up_if_needed(db_session, project_id=project.id) is None
    assert service.start_sampling(db_session, project_id=project.id, enqueue=False) is not None


def test_a_job_that_ended_well_ends_the_back_off(db_session: Session) -> None:
    project = make_project(db_session, min_open_tasks=5)
    add_prompts(db_session, project_id=project.id, contents=["One?", "Two?"])
    _failed_job(db_session, project.id, minutes_ago=0)
    done = service.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert done is not None
    done.state = JobState.done
    done.finished_at = utcnow()
    make_task(db_session, project)  # still below the minimum
    db_session.flush()

    assert service.top_up_resumes_at(db_session, project_id=project.id) is None
    assert service.top_up_if_needed(db_session, project_id=project.id) is not None


@pytest.mark.parametrize(("context", "too_long"), [(None, False), (320, True), (400, False)])
def test_changing_max_new_tokens_marks_measured_prompts_again(
    db_session: Session, monkeypatch: pytest.MonkeyPatch, context: int | None, too_long: bool
) -> None:
    from app.projects import prompt_length

    project = make_project(db_session, max_new_tokens=64)
    add_prompts(db_session, project_id=project.id, contents=["Short?", "Long?"], measure=False)
    short, long = db_session.scalars(
        select(Prompt).where(Prompt.project_id == project.id).order_by(Prompt.id)
    ).all()
    short.token_count, long.token_count, long.too_long = 10, 300, True
    db_session.flush()
    monkeypatch.setattr(prompt_length, "context_of", lambda project: context)

    update_project(db_session, project_id=project.id, max_new_tokens=32)

    # Unknown context (the model cannot be read here): cleared, the sampling worker measures.
    assert (long.too_long, long.token_count, short.too_long) == (too_long, 300, False)
