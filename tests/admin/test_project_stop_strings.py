"""The project settings form's stop strings: shown escaped, saved, and checked (422)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Project
from tests.admin.conftest import LoggedIn
from tests.factories import make_project

FORM = {"name": "Helpful", "samples_per_prompt": "4", "annotations_per_task": "1"}


@pytest.fixture
def with_stops(db_session: Session) -> Project:
    """A committed project with one stop string."""
    project = make_project(db_session, stop_strings=["###"])
    db_session.commit()
    return project


def save_stop_strings(
    client: httpx.Client, admin: LoggedIn, project: Project, stop_strings: str
) -> httpx.Response:
    """The settings form posted over HTMX with this stop strings field."""
    return client.post(
        f"/admin/projects/{project.id}/settings",
        data={**FORM, "stop_strings": stop_strings},
        headers=admin.htmx,
    )


def test_the_settings_form_saves_stop_strings_and_shows_them_escaped(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    response = save_stop_strings(client, admin, project, "\\nUser:\n###")

    assert response.status_code == 200
    assert '<textarea name="stop_strings"' in response.text
    assert "\\nUser:\n###</textarea>" in response.text
    db_session.refresh(project)
    assert project.stop_strings == ["\nUser:", "###"]


def test_a_blank_stop_strings_field_derives_them_from_the_chat_template(
    client: httpx.Client, db_session: Session, admin: LoggedIn, with_stops: Project
) -> None:
    response = save_stop_strings(client, admin, with_stops, "")

    assert response.status_code == 200
    db_session.refresh(with_stops)
    assert with_stops.stop_strings is None


def test_too_many_stop_strings_are_a_422_that_changes_nothing(
    client: httpx.Client, db_session: Session, admin: LoggedIn, with_stops: Project
) -> None:
    response = save_stop_strings(client, admin, with_stops, "\n".join(str(i) for i in range(17)))

    assert response.status_code == 422
    assert "At most 16 stop strings" in response.text
    db_session.refresh(with_stops)
    assert with_stops.stop_strings == ["###"]


def test_a_new_project_takes_stop_strings_from_the_form(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    response = client.post(
        "/admin/projects",
        data={**FORM, "name": "With stops", "base_model": "tiny", "stop_strings": "END"},
        headers=admin.headers,
        follow_redirects=False,
    )

    assert response.status_code == 303
    project = db_session.scalars(select(Project).where(Project.name == "With stops")).one()
    assert project.stop_strings == ["END"]
