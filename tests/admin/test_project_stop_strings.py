"""The project settings form's stop strings: shown escaped, saved, and checked (422)."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Project
from tests.admin.conftest import LoggedIn
from tests.factories import make_project

FORM = {"name": "Helpful", "samples_per_prompt": "4", "annotations_per_task": "1"}


def test_the_settings_form_saves_stop_strings_and_shows_them_escaped(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**FORM, "stop_strings": "\\nUser:\n###"},
        headers=admin.htmx,
    )

    assert response.status_code == 200
    assert '<textarea name="stop_strings"' in response.text
    assert "\\nUser:\n###</textarea>" in response.text
    db_session.refresh(project)
    assert project.stop_strings == ["\nUser:", "###"]


def test_a_blank_stop_strings_field_derives_them_from_the_chat_template(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, stop_strings=["###"])
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**FORM, "stop_strings": ""},
        headers=admin.htmx,
    )

    assert response.status_code == 200
    db_session.refresh(project)
    assert project.stop_strings is None


def test_too_many_stop_strings_are_a_422_that_changes_nothing(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, stop_strings=["###"])
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**FORM, "stop_strings": "\n".join(str(i) for i in range(17))},
        headers=admin.htmx,
    )

    assert response.status_code == 422
    assert "At most 16 stop strings" in response.text
    db_session.refresh(project)
    assert project.stop_strings == ["###"]


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
