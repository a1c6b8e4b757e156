"""A project's generation backend: the service checks it (an 'openai' backend needs an http(s)
URL, the key's variable is a NAME), the admin form and `rankloop projects set` save it, and a
bad value changes nothing."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.errors import InvalidInput
from app.models import Project
from app.projects import generation
from app.projects import service as projects
from rankloop.cli import app
from tests.admin.conftest import LoggedIn
from tests.factories import make_project

FORM = {
    "name": "Served",
    "samples_per_prompt": "4",
    "generation_backend": "openai",
    "generation_base_url": "http://vllm:8000/v1",
    "generation_model": "Qwen/Qwen2.5-1.5B-Instruct",
    "generation_api_key_env": "VLLM_API_KEY",
}


def test_openai_settings_are_saved(db_session: Session) -> None:
    project = make_project(db_session)

    projects.update_project(db_session, project_id=project.id, **FORM)

    assert (project.generation_backend, project.generation_base_url) == (
        "openai",
        "http://vllm:8000/v1",
    )
    assert project.generation_api_key_env == "VLLM_API_KEY"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"generation_backend": "tgi"}, "Generation backend must be one of: hf, openai, vllm"),
        ({"generation_backend": "openai"}, "Generation server URL is needed for the 'openai'"),
        ({"generation_base_url": "vllm:8000"}, "Generation server URL must be an http(s) URL"),
        ({"generation_base_url": "ftp://vllm/v1"}, "Generation server URL must be an http(s) URL"),
        ({"generation_base_url": "http://u:p@vllm/v1"}, "must not hold credentials"),
        ({"generation_api_key_env": "sk-abc123"}, "Generation key variable must be the NAME"),
        ({"generation_model": "m" * 201}, "Generation model must be at most 200 characters"),
    ],
)
def test_bad_generation_settings_are_refused_and_change_nothing(
    db_session: Session, settings: dict[str, str], message: str
) -> None:
    project = make_project(db_session)

    with pytest.raises(InvalidInput, match=re.escape(message)):
        projects.update_project(db_session, project_id=project.id, **settings)

    assert project.generation_backend == "hf"
    assert project.generation_base_url is None
    assert project.generation_api_key_env is None


def test_vllm_is_accepted_without_a_url(db_session: Session) -> None:
    project = make_project(db_session)

    projects.update_project(db_session, project_id=project.id, generation_backend="vllm")

    assert project.generation_backend == "vllm"


@given(st.text(max_size=40))
def test_a_key_variable_is_accepted_only_as_an_environment_name(text: str) -> None:
    try:
        cleaned = generation.clean_text("generation_api_key_env", text)
    except InvalidInput:
        return
    if cleaned is not None:
        assert cleaned[0].isascii()
        assert cleaned[0].isalpha() or cleaned[0] == "_"
        assert all(c.isascii() and (c.isalnum() or c == "_") for c in cleaned)


def test_the_settings_form_saves_and_clears_the_backend(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()

    saved = client.post(f"/admin/projects/{project.id}/settings", data=FORM, headers=admin.htmx)

    assert saved.status_code == 200
    assert '<option value="openai" selected>' in saved.text
    assert 'value="http://vllm:8000/v1"' in saved.text
    db_session.refresh(project)
    assert project.generation_model == "Qwen/Qwen2.5-1.5B-Instruct"

    blank = {**FORM, "generation_backend": "hf", "generation_base_url": "", "generation_model": ""}
    cleared = client.post(f"/admin/projects/{project.id}/settings", data=blank, headers=admin.htmx)

    assert cleared.status_code == 200
    db_session.refresh(project)
    assert (project.generation_backend, project.generation_base_url) == ("hf", None)
    assert project.generation_model is None


def test_the_form_refuses_openai_without_a_url(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**FORM, "generation_base_url": ""},
        headers=admin.htmx,
    )

    assert response.status_code == 422
    assert "Generation server URL is needed" in response.text
    db_session.refresh(project)
    assert project.generation_backend == "hf"


def test_projects_set_changes_the_backend(migrated_engine: Engine) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["projects", "create", "--name", "cli served"]).exit_code == 0
    try:
        result = runner.invoke(
            app,
            [
                "projects", "set", "cli served", "--set", "generation_backend=openai",
                "--set", "generation_base_url=http://127.0.0.1:8000/v1",
                "--set", "generation_api_key_env=VLLM_API_KEY",
            ],
        )  # fmt: skip
        refused = runner.invoke(
            app, ["projects", "set", "cli served", "--set", "generation_base_url=nope"]
        )

        assert result.exit_code == 0, result.output
        assert refused.exit_code == 2
        with Session(migrated_engine) as session:
            project = session.scalars(select(Project).where(Project.name == "cli served")).one()
            assert (project.generation_backend, project.generation_base_url) == (
                "openai",
                "http://127.0.0.1:8000/v1",
            )
    finally:
        with Session(migrated_engine) as session:
            session.execute(delete(Project).where(Project.name == "cli served"))
            session.commit()
