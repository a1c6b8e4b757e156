"""POST /api/v1/projects/{id}/demonstrations: formats, dedup, 401/403, 422 with lines and
nothing stored."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Demonstration, Project, Prompt
from tests.api.conftest import MakeToken, bearer, count, post_content
from tests.factories import make_project, make_prompt


def url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/demonstrations"


def test_dolly_demonstrations_import_as_a_json_array_with_dedup(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session)
    make_prompt(db_session, project, "Name a colour")
    db_session.commit()
    body = [
        {"instruction": "Name a colour", "context": "", "response": "Blue", "category": "x"},
        {"instruction": "Name a fruit", "context": "", "response": "Pear", "category": "x"},
        {"instruction": "Name a colour", "context": "", "response": "Blue", "category": "x"},
    ]

    response = client.post(url(project.id), json=body, headers=writer)
    again = client.post(url(project.id), json=body, headers=writer)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "format": "dolly",
        "records": 3,
        "added": 2,
        "duplicates": 1,
        "prompts_added": 1,
        "errors": [],
    }
    assert again.json()["added"] == 0
    assert again.json()["duplicates"] == 3
    rows = db_session.execute(
        select(Prompt.text, Demonstration.response, Demonstration.source)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .where(Demonstration.project_id == project.id)
        .order_by(Prompt.text)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("Name a colour", "Blue", "dolly"),
        ("Name a fruit", "Pear", "dolly"),
    ]


def test_plain_ndjson_demonstrations(
    client: httpx.Client, writer: dict[str, str], project: Project
) -> None:
    lines = [{"prompt": "Hi?", "response": "Hello."}, {"prompt": "Bye?", "response": "Bye."}]

    response = post_content(
        client, url(project.id), "\n".join(json.dumps(x) for x in lines).encode(), writer
    )

    assert response.status_code == 200, response.text
    assert (response.json()["format"], response.json()["added"]) == ("plain", 2)


def test_a_bad_record_is_422_with_its_lines_and_nothing_is_stored(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    body = b'{"prompt": "good", "response": "ok"}\n{"prompt": "no answer"}\nnot json\n'

    response = post_content(client, url(project.id), body, writer)

    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [(d["field"], d["line"]) for d in details] == [("body", 2), ("body", 3)]
    assert count(db_session, Demonstration, Demonstration.project_id == project.id) == 0
    assert count(db_session, Prompt, Prompt.project_id == project.id) == 0


def test_skip_invalid_imports_the_good_records(
    client: httpx.Client, writer: dict[str, str], project: Project
) -> None:
    body = b'{"prompt": "good", "response": "ok"}\n{"prompt": "no answer"}\n'

    response = post_content(client, url(project.id), body, writer, params={"skip_invalid": "true"})

    assert response.status_code == 200
    assert response.json()["added"] == 1
    assert [e["line"] for e in response.json()["errors"]] == [2]


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [({"format": "excel"}, b'[{"prompt": "x", "response": "y"}]', "format"), ({}, b"", "body")],
)
def test_bad_requests_are_422_naming_the_field(
    client: httpx.Client,
    writer: dict[str, str],
    project: Project,
    params: dict[str, str],
    body: bytes,
    field: str,
) -> None:
    response = post_content(
        client, url(project.id), body, writer, "application/json", params=params
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


def test_no_token_is_401_and_a_read_token_is_403_and_nothing_is_stored(
    client: httpx.Client, db_session: Session, make_token: MakeToken, project: Project
) -> None:
    body = [{"prompt": "Hi?", "response": "Hello."}]

    anonymous = client.post(url(project.id), json=body)
    reader = client.post(url(project.id), json=body, headers=bearer(make_token("read")))

    assert anonymous.status_code == 401
    assert reader.status_code == 403
    assert reader.json()["error"]["code"] == "missing_scope"
    assert count(db_session, Demonstration, Demonstration.project_id == project.id) == 0


def test_an_unknown_project_is_404(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    response = client.post(url(999_999), json=[{"prompt": "a", "response": "b"}], headers=writer)
    assert response.status_code == 404
