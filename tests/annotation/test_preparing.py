"""With no task to give, the ranking page says what new tasks wait for (issue 18, item 7): the
tiny model being built, then a sampling job's progress, and it checks again by itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app import preparation
from app.config import get_settings
from app.db import utcnow
from app.models import JobState, Project, SamplingJob, User
from app.sampling import service as sampling
from tests.annotation.conftest import Annotator, make_member
from tests.factories import make_project, make_prompt


@pytest.fixture
def tiny_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's `tiny` model would be built (not built)."""
    settings = get_settings()
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    return settings.tiny_model_dir


def queued_job(session: Session, project: Project, prompts: int = 3) -> int:
    for _ in range(prompts):
        make_prompt(session, project)
    job = sampling.start_sampling(session, project_id=project.id, enqueue=False)
    assert job is not None
    session.commit()
    return job.id


def _set_progress(
    session: Session, job_id: int, *, done: int, state: JobState = JobState.running
) -> None:
    job = session.get(SamplingJob, job_id)
    assert job is not None
    job.state, job.prompts_done, job.heartbeat_at = state, done, utcnow()
    session.commit()


def test_while_the_tiny_model_is_built_the_page_says_so_and_checks_again(
    db_session: Session, log_in: Callable[[User], Annotator], tiny_model_dir: Path
) -> None:
    project = make_project(db_session, base_model="tiny")
    queued_job(db_session, project)
    annotator = log_in(make_member(db_session, project))
    preparation.write_model_status(tiny_model_dir, done=120, total=400)

    page = annotator.post("/annotate/next", htmx=True)

    assert "No task needs you right now" not in page.text
    assert "preparing: building the tiny model… (120/400 steps)" in page.text
    assert 'hx-trigger="every 5s"' in page.text


def test_a_queued_then_running_sampling_job_is_counted_on_the_page_and_in_json(
    db_session: Session, log_in: Callable[[User], Annotator], tiny_model_dir: Path
) -> None:
    project = make_project(db_session, base_model="tiny")
    job_id = queued_job(db_session, project, prompts=3)
    annotator = log_in(make_member(db_session, project))

    queued = annotator.post("/annotate/next", htmx=True)
    assert "preparing: sampling 3 prompts… (waiting for a worker)" in queued.text

    _set_progress(db_session, job_id, done=2)  # as the worker's first chunk leaves it
    running = annotator.post("/annotate/next", htmx=True)
    assert 'id="preparing"' in running.text
    assert "preparing: sampling 3 prompts… (2/3)" in running.text
    assert annotator.next_task()["preparing"] == "preparing: sampling 3 prompts… (2/3)"


def test_with_nothing_under_way_the_page_says_no_task_needs_you(
    db_session: Session, log_in: Callable[[User], Annotator], tiny_model_dir: Path
) -> None:
    project = make_project(db_session, base_model="tiny")
    job_id = queued_job(db_session, project)
    _set_progress(db_session, job_id, done=3, state=JobState.done)
    annotator = log_in(make_member(db_session, project))

    page = annotator.post("/annotate/next", htmx=True)

    assert "No task needs you right now" in page.text
    assert 'id="preparing"' not in page.text
    assert annotator.next_task()["preparing"] is None
