"""Prompts are measured in the project's tokenizer when they are imported: one longer than the
model's context less max new tokens is named in the preview and the confirmation, stored with
its token count and marked too long; the project page counts such prompts and the settings
say what sampling does with them (`long_prompts`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import Project, Prompt
from app.projects import imports, prompt_length
from app.projects.prompt_import import ParsedPrompt
from app.projects.service import add_prompts, update_project
from tests.admin.conftest import LoggedIn, admin
from tests.factories import make_project, make_user
from tests.projects.conftest import Staging

__all__ = ["admin"]

LONG = "Tell me everything about " + "the old stone bridge and the river under it, " * 300 + "Why?"
CONTEXT = 256  # the tiny model's


def jsonl(*prompts: str) -> bytes:
    return "\n".join(json.dumps({"prompt": p}) for p in prompts).encode()


def upload(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def post_form(client: httpx.Client, admin: LoggedIn, url: str, **form: str) -> httpx.Response:
    """A form posted over HTMX, as the admin pages send it."""
    return client.post(url, data=form, headers=admin.htmx)


@pytest.fixture
def project(db_session: Session, tiny_model_path: Path) -> Project:
    return make_project(db_session, base_model=str(tiny_model_path), max_new_tokens=64)


def _prompts(session: Session, project: Project) -> dict[str, Prompt]:
    rows = session.scalars(select(Prompt).where(Prompt.project_id == project.id))
    return {p.text: p for p in rows}


def test_preview_names_the_prompts_too_long_for_the_model(
    db_session: Session, project: Project, staging: Staging
) -> None:
    user = make_user(db_session)

    preview = staging.preview(
        imports.PROMPTS,
        project.id,
        user.id,
        jsonl("Why is the sky blue?", LONG, "What is a good breakfast?"),
    )

    assert preview.measured
    assert preview.too_long is not None
    assert preview.too_long.count == 1
    assert preview.too_long.budget == CONTEXT - 64
    (long,) = preview.too_long.first
    assert long.line == 2
    assert long.tokens > 2000

    assert preview.token
    outcome = staging.confirm(imports.PROMPTS, project.id, user.id, preview.token)
    assert outcome.too_long is not None
    assert [p.line for p in outcome.too_long.first] == [2]
    stored = _prompts(db_session, project)
    assert stored[LONG].too_long
    assert stored[LONG].token_count == long.tokens
    short = stored["Why is the sky blue?"]
    assert not short.too_long
    assert short.token_count is not None
    assert 0 < short.token_count < 30


def test_every_import_path_measures_what_it_adds(db_session: Session, project: Project) -> None:
    """The REST API and the command line import through `import_prompts`."""
    added = imports.import_prompts(
        db_session,
        project_id=project.id,
        prompts=[ParsedPrompt(LONG, "plain", 1), ParsedPrompt("Hello?", "plain", 2)],
    )

    assert [p.text for p in added.too_long] == [LONG]
    assert added.budget == CONTEXT - 64
    assert all(p.token_count for p in added.added)


def test_prompts_stay_unmeasured_when_the_tokenizer_cannot_be_read(
    db_session: Session, tmp_path: Path
) -> None:
    project = make_project(db_session, base_model=str(tmp_path / "no-model-here"))

    added = add_prompts(db_session, project_id=project.id, contents=[LONG])

    assert added.budget is None
    assert not added.too_long
    assert added.added[0].token_count is None  # the sampling worker measures it


def test_remote_code_is_never_run_to_measure(db_session: Session, tiny_model_path: Path) -> None:
    project = make_project(db_session, base_model=str(tiny_model_path), trust_remote_code=True)
    assert prompt_length.tokenizer_source(project) is None


def test_the_import_pages_warn_and_the_project_page_counts_too_long_prompts(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    db_session.commit()

    preview = client.post(
        f"/admin/projects/{project.id}/prompts/import",
        files=upload("p.jsonl", jsonl("Short one?", LONG)),
        headers=admin.htmx,
    )

    assert preview.status_code == 200
    warning = re.search(r'<div class="flagged" id="import-too-long".*?</div>', preview.text, re.S)
    assert warning, preview.text
    text = " ".join(re.sub(r"<[^>]+>", "", warning.group(0)).split())
    assert "1 prompt is too long for the model" in text
    assert f"a prompt may take {CONTEXT - 64}" in text
    assert "Line 2 has" in text
    assert "keep its end and cut the start" in text
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token
    confirmed = client.post(
        f"/admin/projects/{project.id}/prompts/import/confirm",
        data={"token": token.group(1)},
        headers=admin.htmx,
    )
    assert 'id="import-too-long"' in confirmed.text

    page = client.get(f"/admin/projects/{project.id}").text
    assert re.search(r'id="stat-too-long">1</span> too long', page)


# The setting --------------------------------------------------------------------------------


def test_long_prompts_is_a_project_setting(db_session: Session, project: Project) -> None:
    assert project.long_prompts == "truncate"

    update_project(db_session, project_id=project.id, long_prompts="skip")
    assert project.long_prompts == "skip"

    with pytest.raises(InvalidInput, match="Long prompts must be one of: truncate, skip"):
        update_project(db_session, project_id=project.id, long_prompts="drop")
    assert project.long_prompts == "skip"


def test_the_settings_form_sets_long_prompts(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    db_session.commit()
    page = client.get(f"/admin/projects/{project.id}").text
    assert '<option value="truncate" selected>' in page

    settings = f"/admin/projects/{project.id}/settings"
    saved = post_form(client, admin, settings, name=project.name, long_prompts="skip")

    assert saved.status_code == 200
    assert '<option value="skip" selected>' in saved.text
    db_session.refresh(project)
    assert project.long_prompts == "skip"
    refused = post_form(client, admin, settings, name=project.name, long_prompts="sometimes")
    assert refused.status_code == 422


def test_a_new_project_takes_long_prompts_from_the_form(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    form = {"name": "Skipper", "base_model": "tiny", "long_prompts": "skip"}
    created = post_form(client, admin, "/admin/projects", **form)

    assert created.status_code in (200, 204, 303), created.text
    project = db_session.scalars(select(Project).where(Project.name == "Skipper")).one()
    assert project.long_prompts == "skip"
