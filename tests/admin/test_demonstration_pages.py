"""The admin demonstration upload over HTTP: preview with counts and bad lines, confirm, access."""

from __future__ import annotations

import json
import re

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Demonstration, Prompt
from tests.admin.conftest import LoggedIn
from tests.factories import make_project, make_prompt, make_user
from tests.helpers import login


def upload(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_project_page_links_to_the_demonstration_import(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text
    form = client.get(f"/admin/projects/{project.id}/demonstrations/import")

    assert f'href="/admin/projects/{project.id}/demonstrations/import"' in page
    assert form.status_code == 200
    assert "Import demonstrations into" in form.text


def test_upload_preview_then_confirm_adds_the_new_demonstrations_once(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_prompt(db_session, project, "Name a colour")
    db_session.commit()
    data = b"\n".join(
        json.dumps(x).encode()
        for x in [
            {"instruction": "Name a colour", "input": "", "output": "Blue"},
            {"instruction": "Name a fruit", "input": "", "output": "<b>Pear</b>"},
            {"instruction": "Name a fruit", "input": "", "output": "<b>Pear</b>"},
            {"instruction": "No output", "input": ""},
        ]
    )

    preview = client.post(
        f"/admin/projects/{project.id}/demonstrations/import",
        files=upload("alpaca.jsonl", data),
        data={"format": ""},
        headers=admin.htmx,
    )

    assert preview.status_code == 200
    assert "<html" not in preview.text
    assert "Format: <strong>Alpaca" in preview.text
    assert '<strong data-count="new">2</strong>' in preview.text
    assert '<strong data-count="new-prompts">1</strong>' in preview.text
    assert '<strong data-count="repeated">1</strong>' in preview.text
    assert '<strong data-count="errors">1</strong>' in preview.text
    assert '<td class="num">4</td>' in preview.text
    assert "&lt;b&gt;Pear&lt;/b&gt;" in preview.text
    assert count(db_session, Demonstration) == 0  # nothing stored before the confirm
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token

    confirmed = client.post(
        f"/admin/projects/{project.id}/demonstrations/import/confirm",
        data={"token": token.group(1)},
        headers=admin.htmx,
    )
    again = client.post(
        f"/admin/projects/{project.id}/demonstrations/import/confirm",
        data={"token": token.group(1)},
        headers=admin.htmx,
    )

    assert confirmed.status_code == 200
    assert "Imported 2 demonstrations" in confirmed.text
    assert again.status_code == 404
    assert count(db_session, Demonstration) == 2
    texts = db_session.scalars(select(Prompt.text).where(Prompt.project_id == project.id))
    assert sorted(texts) == ["Name a colour", "Name a fruit"]


def test_a_prompt_import_token_is_not_a_demonstration_import(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()
    preview = client.post(
        f"/admin/projects/{project.id}/prompts/import",
        files=upload("p.jsonl", b'{"prompt": "Only a prompt"}\n'),
        headers=admin.htmx,
    )
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token

    response = client.post(
        f"/admin/projects/{project.id}/demonstrations/import/confirm",
        data={"token": token.group(1)},
        headers=admin.htmx,
    )

    assert response.status_code == 404
    assert count(db_session, Prompt) == 0


def test_an_empty_upload_is_422(client: httpx.Client, db_session: Session, admin: LoggedIn) -> None:
    project = make_project(db_session)
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/demonstrations/import",
        files=upload("empty.jsonl", b""),
        headers=admin.htmx,
    )

    assert response.status_code == 422
    assert "The file is empty" in response.text


def test_annotators_get_403_and_anonymous_users_are_sent_to_log_in(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    make_user(db_session, username="demo-annotator")
    db_session.commit()
    path = f"/admin/projects/{project.id}/demonstrations/import"

    anonymous = client.get(path, follow_redirects=False)
    token = login(client, "demo-annotator")
    page = client.get(path)
    posted = client.post(
        path,
        files=upload("d.jsonl", b'{"prompt": "a", "response": "b"}'),
        headers={"X-CSRF-Token": token},
    )

    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/login")
    assert (page.status_code, posted.status_code) == (403, 403)
    assert count(db_session, Demonstration) == 0
