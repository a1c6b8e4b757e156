"""The project page's "Next" line: what moves the project on, and its "Sample more" button."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.service import next_step
from app.models import SamplingJob
from app.projects.service import add_prompts
from tests.admin.conftest import LoggedIn
from tests.factories import make_project, make_task

IDLE = {
    "prompts": 10,
    "open_tasks": 0,
    "new_rankings": 0,
    "round_running": False,
    "sampling_running": False,
}


@pytest.mark.parametrize(
    ("counts", "action", "words"),
    [
        ({"prompts": 0, "open_tasks": 3}, "import_prompts", "Import prompts"),
        ({"round_running": True, "open_tasks": 3}, "wait_for_round", "round is running"),
        ({"open_tasks": 3, "new_rankings": 4}, "annotate", "Annotate 3 open tasks"),
        ({"open_tasks": 1}, "annotate", "Annotate 1 open task."),
        ({"open_tasks": 3, "new_rankings": 10}, "start_round", "10 new rankings"),
        ({"new_rankings": 1}, "start_round", "1 new ranking since"),
        ({"sampling_running": True}, "wait_for_sampling", "making new tasks"),
        ({}, "sample", "Sample more"),
    ],
)
def test_the_next_step_follows_the_counts(
    counts: dict[str, object], action: str, words: str
) -> None:
    step = next_step(**{**IDLE, **counts})  # type: ignore[arg-type]

    assert step.action == action
    assert words in step.message


def test_a_project_with_nothing_open_offers_sample_more_and_it_starts_a_job(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    add_prompts(db_session, project_id=project.id, contents=["One?", "Two?"])
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text
    fragment = client.post(f"/admin/projects/{project.id}/sampling", headers=admin.htmx).text

    assert 'data-action="sample"' in page
    assert f'hx-post="/admin/projects/{project.id}/sampling"' in page
    job = db_session.scalars(select(SamplingJob).where(SamplingJob.project_id == project.id)).one()
    assert len(job.prompt_ids) == 2
    assert 'data-action="wait_for_sampling"' in fragment
    assert f'id="sampling-job-{job.id}"' in fragment


def test_open_tasks_are_the_next_step(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text

    assert 'data-action="annotate"' in page
    assert "Annotate 1 open task." in page
