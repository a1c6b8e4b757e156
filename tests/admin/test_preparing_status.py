"""The project page says what its first tasks wait for (issue 18, item 7): the tiny model being
built, a queued or running sampling job, or why the build failed; it refreshes meanwhile."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from app import preparation
from app.config import get_settings
from app.db import utcnow
from app.models import JobState, SamplingJob
from app.sampling import service as sampling
from tests.admin.conftest import LoggedIn
from tests.factories import make_project, make_prompt

REFRESHES = 'hx-trigger="every 3s"'


@pytest.fixture
def tiny_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's `tiny` model would be built (not built)."""
    settings = get_settings()
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    return settings.tiny_model_dir


def demo_like_project(session: Session) -> tuple[int, int]:
    """A `tiny` project with its first sampling job queued, as `rankloop demo` leaves it."""
    project = make_project(session, base_model="tiny")
    for _ in range(12):
        make_prompt(session, project)
    job = sampling.start_sampling(session, project_id=project.id, enqueue=False)
    assert job is not None
    session.commit()
    return project.id, job.id


def test_the_page_follows_the_build_then_the_sampling(
    client: httpx.Client, admin: LoggedIn, db_session: Session, tiny_model_dir: Path
) -> None:
    project_id, job_id = demo_like_project(db_session)
    page = f"/admin/projects/{project_id}"

    preparation.write_model_status(tiny_model_dir, done=0, total=0)
    starting = client.get(page).text
    assert "preparing: building the tiny model…</p>" in starting
    assert REFRESHES in starting

    preparation.write_model_status(tiny_model_dir, done=200, total=400)
    assert "preparing: building the tiny model… (200/400 steps)" in client.get(page).text

    (tiny_model_dir / "config.json").parent.mkdir(parents=True)
    (tiny_model_dir / "config.json").write_text("{}")  # built
    queued = client.get(page).text
    assert "preparing: sampling 12 prompts… (waiting for a worker)" in queued
    assert "No sampling jobs yet" not in queued

    job = db_session.get(SamplingJob, job_id)
    assert job is not None
    job.state, job.prompts_done, job.heartbeat_at = JobState.running, 4, utcnow()
    db_session.commit()
    running = client.get(page).text
    assert "preparing: sampling 12 prompts… (4/12)" in running
    assert REFRESHES in running

    job.state = JobState.done
    db_session.commit()
    done = client.get(page).text
    assert 'id="preparing"' not in done
    assert REFRESHES not in done


def test_a_failed_build_is_said_once_and_the_page_stops_refreshing(
    client: httpx.Client, admin: LoggedIn, db_session: Session, tiny_model_dir: Path
) -> None:
    project = make_project(db_session, base_model="tiny")
    db_session.commit()
    preparation.write_model_status(tiny_model_dir, error="OSError: No space left on device")

    page = client.get(f"/admin/projects/{project.id}").text

    assert "the tiny model could not be built: OSError: No space left on device" in page
    assert REFRESHES not in page


def test_a_silent_build_is_not_shown_for_ever(tiny_model_dir: Path) -> None:
    """A builder that stopped writing its status (its worker was killed) is no build."""
    preparation.write_model_status(tiny_model_dir, done=10, total=400)

    assert preparation.model_build(tiny_model_dir) is not None
    assert preparation.model_build(tiny_model_dir, stale_after=-1) is None
