"""Admin pages on the real unit of work (session_scope), not the test's shared transaction.

The `client` fixture keeps one session open for the whole test, which hides what happens when a
request fails for real: the transaction rolls back, the session closes, and the error page still
has to render (it once raised DetachedInstanceError reading the logged-in user: a 500).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import get_settings
from app.main import create_app
from app.models import Project, Prompt, Role
from tests.conftest import FreshDatabase, reset_app_caches
from tests.factories import make_project, make_user
from tests.helpers import login


@pytest.fixture
def app_client(
    fresh_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("RANKLOOP_DATABASE_URL", fresh_database.url)
    reset_app_caches()
    try:
        with TestClient(create_app(), base_url="http://testserver") as client:
            yield client
    finally:
        monkeypatch.undo()
        reset_app_caches()


def test_a_bad_settings_form_gets_a_422_page_and_changes_nothing(
    app_client: TestClient, fresh_database: FreshDatabase
) -> None:
    with fresh_database.session() as session:
        make_user(session, username="uow-admin", role=Role.admin)
        project_id = make_project(session, name="UoW", lease_minutes=15).id
        session.commit()
    token = login(app_client, "uow-admin")
    form = {"name": "UoW renamed", "lease_minutes": "30", "samples_per_prompt": "3"}

    page = app_client.post(
        f"/admin/projects/{project_id}/settings", data=form, headers={"X-CSRF-Token": token}
    )
    fragment = app_client.post(
        f"/admin/projects/{project_id}/settings",
        data=form,
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )

    assert (page.status_code, fragment.status_code) == (422, 422)
    assert "Samples per prompt must be between 4 and 9" in page.text
    assert "uow-admin" in page.text  # the page header still shows who is logged in
    with fresh_database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        assert (project.name, project.lease_minutes) == ("UoW", 15)


def test_an_annotator_gets_a_403_page(
    app_client: TestClient, fresh_database: FreshDatabase
) -> None:
    with fresh_database.session() as session:
        make_user(session, username="uow-annotator")
        session.commit()
    login(app_client, "uow-annotator")

    response = app_client.get("/admin")

    assert response.status_code == 403
    assert "Admins only" in response.text


def test_import_commits_and_removes_the_staged_upload(
    app_client: TestClient, fresh_database: FreshDatabase
) -> None:
    with fresh_database.session() as session:
        make_user(session, username="uow-importer", role=Role.admin)
        project_id = make_project(session, name="UoW import").id
        session.commit()
    token = login(app_client, "uow-importer")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    data = "\n".join(json.dumps({"prompt": f"Prompt {i}"}) for i in range(3)).encode()

    preview = app_client.post(
        f"/admin/projects/{project_id}/prompts/import",
        files={"file": ("p.jsonl", data, "application/json")},
        headers=headers,
    )
    staged = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert staged
    staged_file = get_settings().data_dir / "uploads" / f"{staged.group(1)}.json"
    assert staged_file.exists()
    confirmed = app_client.post(
        f"/admin/projects/{project_id}/prompts/import/confirm",
        data={"token": staged.group(1)},
        headers=headers,
    )

    assert confirmed.status_code == 200
    assert not staged_file.exists()
    with fresh_database.session() as session:
        texts = session.scalars(select(Prompt.text).where(Prompt.project_id == project_id))
        assert sorted(texts) == ["Prompt 0", "Prompt 1", "Prompt 2"]
