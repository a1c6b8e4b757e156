"""Prompt import service: preview counts against the project, confirm inserts what was previewed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Project, Prompt
from app.projects import imports
from app.projects.prompt_import import ParsedPrompt
from tests.factories import make_project, make_prompt, make_user
from tests.projects.conftest import Staging


def jsonl(*prompts: object) -> bytes:
    return "\n".join(json.dumps({"prompt": p}) for p in prompts).encode()


@pytest.fixture
def project(db_session: Session) -> Project:
    """A project that has the prompt "Already here"."""
    made = make_project(db_session)
    make_prompt(db_session, made, "Already here")
    return made


def test_preview_counts_new_existing_and_repeated_prompts(
    db_session: Session, tmp_path: Path, staging: Staging, project: Project
) -> None:
    admin = make_user(db_session)
    data = jsonl("New one", "Already  here", "New one", "Another") + b"\n{bad"

    preview = staging.preview(imports.PROMPTS, project.id, admin.id, data)

    assert (preview.new, preview.in_project, preview.repeated) == (2, 1, 1)
    assert [r.status for r in preview.rows] == ["new", "in project", "repeated in file", "new"]
    assert [e.line for e in preview.errors] == [5]
    assert preview.token is not None
    assert list(tmp_path.glob("*.json")) == [tmp_path / f"{preview.token}.json"]


def test_confirm_imports_the_previewed_prompts_once(
    db_session: Session, tmp_path: Path, staging: Staging, project: Project
) -> None:
    admin = make_user(db_session)
    preview = staging.preview(
        imports.PROMPTS, project.id, admin.id, jsonl("One", "Already here", "Two", "One")
    )
    assert preview.token

    outcome = staging.confirm(imports.PROMPTS, project.id, admin.id, preview.token)
    db_session.commit()

    assert (outcome.added, outcome.duplicates) == (2, 2)
    texts = db_session.scalars(select(Prompt.text).where(Prompt.project_id == project.id))
    assert sorted(texts) == ["Already here", "One", "Two"]
    assert not list(tmp_path.glob("*.json"))  # the staged file goes once the import commits
    with pytest.raises(NotFound, match="expired or was already imported"):
        staging.confirm(imports.PROMPTS, project.id, admin.id, preview.token)


def test_a_preview_is_bound_to_its_project_and_admin(db_session: Session, staging: Staging) -> None:
    project, other_project = make_project(db_session), make_project(db_session)
    admin, other_admin = make_user(db_session), make_user(db_session)
    preview = staging.preview(imports.PROMPTS, project.id, admin.id, jsonl("x"))
    assert preview.token

    for project_id, user_id in [(other_project.id, admin.id), (project.id, other_admin.id)]:
        with pytest.raises(NotFound):
            staging.confirm(imports.PROMPTS, project_id, user_id, preview.token)


def test_a_token_that_is_not_ours_cannot_reach_outside_the_folder(
    db_session: Session, staging: Staging
) -> None:
    project = make_project(db_session)
    with pytest.raises(NotFound):
        staging.confirm(imports.PROMPTS, project.id, 1, "../" * 8)


def test_nothing_is_staged_when_every_prompt_is_known(
    db_session: Session, tmp_path: Path, staging: Staging
) -> None:
    project = make_project(db_session)
    make_prompt(db_session, project, "Known")

    preview = staging.preview(imports.PROMPTS, project.id, 1, jsonl("Known"))

    assert preview.token is None
    assert not list(tmp_path.glob("*.json"))


def test_import_keeps_each_prompts_format_and_conversation(db_session: Session) -> None:
    project = make_project(db_session)
    chat = [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Hi"}]

    added = imports.import_prompts(
        db_session,
        project_id=project.id,
        prompts=[
            ParsedPrompt("Summarise\n\ntext", "alpaca", 1),
            ParsedPrompt(chat, "plain", 2),
        ],
    )

    alpaca, conversation = added.added
    assert (alpaca.source, alpaca.messages) == ("alpaca", None)
    assert conversation.messages == chat
    assert conversation.text == "system: Be kind\n\nuser: Hi"
