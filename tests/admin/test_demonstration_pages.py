"""The admin demonstration upload over HTTP: preview with counts and bad lines, confirm, access."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Demonstration, Project, Prompt
from tests.admin.conftest import (
    LoggedIn,
    confirm_import,
    count,
    import_token,
    jsonl,
    post_file,
    shown_counts,
)
from tests.factories import make_prompt
from tests.helpers import login_new_user


def test_the_project_page_links_to_the_demonstration_import(
    client: httpx.Client, admin: LoggedIn, project: Project
) -> None:
    page = client.get(f"/admin/projects/{project.id}").text
    form = client.get(f"/admin/projects/{project.id}/demonstrations/import")

    assert f'href="/admin/projects/{project.id}/demonstrations/import"' in page
    assert form.status_code == 200
    assert "Import demonstrations into" in form.text


def test_upload_preview_then_confirm_adds_the_new_demonstrations_once(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    url = f"/admin/projects/{project.id}/demonstrations/import"
    data = jsonl(
        {"instruction": "Name a colour", "input": "", "output": "Blue"},
        {"instruction": "Name a fruit", "input": "", "output": "<b>Pear</b>"},
        {"instruction": "Name a fruit", "input": "", "output": "<b>Pear</b>"},
        {"instruction": "No output", "input": ""},
    )
    make_prompt(db_session, project, "Name a colour")
    db_session.commit()

    preview = post_file(client, url, "alpaca.jsonl", data, admin.htmx, data={"format": ""})

    assert preview.status_code == 200
    assert "<html" not in preview.text
    assert "Format: <strong>Alpaca" in preview.text
    counts = shown_counts(preview)
    assert (counts["new"], counts["new-prompts"], counts["repeated"], counts["errors"]) == (
        2,
        1,
        1,
        1,
    )
    assert '<td class="num">4</td>' in preview.text
    assert "&lt;b&gt;Pear&lt;/b&gt;" in preview.text
    assert count(db_session, Demonstration) == 0  # nothing stored before the confirm
    token = import_token(preview)

    confirmed = confirm_import(client, url, token, admin.htmx)
    again = confirm_import(client, url, token, admin.htmx)

    assert confirmed.status_code == 200
    assert "Imported 2 demonstrations" in confirmed.text
    assert again.status_code == 404
    assert count(db_session, Demonstration) == 2
    texts = db_session.scalars(select(Prompt.text).where(Prompt.project_id == project.id))
    assert sorted(texts) == ["Name a colour", "Name a fruit"]


def test_a_prompt_import_token_is_not_a_demonstration_import(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    prompts = f"/admin/projects/{project.id}/prompts/import"
    preview = post_file(client, prompts, "p.jsonl", b'{"prompt": "Only a prompt"}\n', admin.htmx)
    token = import_token(preview)

    response = confirm_import(
        client, f"/admin/projects/{project.id}/demonstrations/import", token, admin.htmx
    )

    assert response.status_code == 404
    assert count(db_session, Prompt) == 0


def test_annotators_get_403_and_anonymous_users_are_sent_to_log_in(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    path = f"/admin/projects/{project.id}/demonstrations/import"

    anonymous = client.get(path, follow_redirects=False)
    token = login_new_user(client, db_session, "demo-annotator")
    page = client.get(path)
    posted = post_file(
        client, path, "d.jsonl", b'{"prompt": "a", "response": "b"}', {"X-CSRF-Token": token}
    )

    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/login")
    assert (page.status_code, posted.status_code) == (403, 403)
    assert count(db_session, Demonstration) == 0
