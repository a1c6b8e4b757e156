"""One error contract for /api/v1: every error, the framework's own included (a body that is
not JSON, a method an endpoint does not serve, a path that is no endpoint), answers
{"error": {"code", "message", "details"}}; round bodies are read strictly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project, TrainingRound
from tests.api.conftest import RoundsApi


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object, after checking the envelope is the documented one and nothing else."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["message"]
    return dict(body["error"])


def round_count(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count(TrainingRound.id))) or 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"type": "dpo"', "Expecting ',' delimiter"),
        (b'{"type": "dpo\xff"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["bad_syntax", "not_utf8", "too_deep"],
)
def test_a_body_that_is_not_json_is_422_in_the_error_shape(
    db_session: Session, rounds_api: RoundsApi, ready_project: Project, body: bytes, reason: str
) -> None:
    response = rounds_api(ready_project).post_content(body, "application/json")

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert error["message"].startswith("The body is not valid JSON")
    assert reason in error["message"]
    assert [d["field"] for d in error["details"]] == ["body"]
    assert round_count(db_session) == 0


def test_a_method_an_endpoint_does_not_serve_is_405_allowing_every_method_of_the_path(
    client: httpx.Client, writer: dict[str, str], project: Project
) -> None:
    """GET and POST /projects/{id}/rounds are two routes: Allow names both."""
    response = client.delete(f"/api/v1/projects/{project.id}/rounds", headers=writer)

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    assert error["details"] == {"allowed_methods": ["GET", "POST"]}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
def test_405_on_a_read_only_endpoint_allows_get(
    client: httpx.Client, writer: dict[str, str], method: str
) -> None:
    response = client.request(method, "/api/v1/projects", headers=writer)

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/projects/1/nope", "/api/v2/projects"])
def test_a_path_that_is_no_endpoint_is_404_in_the_error_shape(
    client: httpx.Client, writer: dict[str, str], path: str
) -> None:
    response = client.get(path, headers=writer)

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert path in error["message"]


def test_invalid_fields_are_422_naming_each_field(
    client: httpx.Client, writer: dict[str, str]
) -> None:
    response = client.get("/api/v1/projects", params={"limit": 0, "cursor": "x"}, headers=writer)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert sorted(d["field"] for d in error["details"]) == ["cursor", "limit"]


@pytest.mark.parametrize("body", [{"beta": 0.1}, {"type": None, "beta": 0.1}])
def test_a_round_without_a_type_names_the_round_types(
    db_session: Session, rounds_api: RoundsApi, ready_project: Project, body: dict[str, Any]
) -> None:
    response = rounds_api(ready_project).post(body)

    assert response.status_code == 422
    error = error_of(response)
    assert "discriminator" not in response.text
    [detail] = error["details"]
    assert detail["field"] == "type"
    for round_type in ("reward_ppo", "sft", "dpo"):
        assert round_type in detail["message"]
    assert round_count(db_session) == 0


def test_a_body_sent_without_a_json_content_type_says_so(
    rounds_api: RoundsApi, project: Project
) -> None:
    response = rounds_api(project).post_content(b'{"type": "dpo"}', "text/plain")

    assert response.status_code == 422
    assert "Content-Type: application/json" in error_of(response)["details"][0]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "dpo", "epochs": "3"}, "dpo.epochs"),
        ({"type": "dpo", "epochs": True}, "dpo.epochs"),
        ({"type": "dpo", "epochs": 3.0}, "dpo.epochs"),
        ({"type": "dpo", "beta": "0.1"}, "dpo.beta"),
        ({"type": "dpo", "min_heldout_accuracy": False}, "dpo.min_heldout_accuracy"),
        ({"type": "reward_ppo", "ppo": {"adaptive_kl": "true"}}, "reward_ppo.ppo.adaptive_kl"),
        ({"type": "reward_ppo", "reward_model": {"epochs": "2"}}, "reward_ppo.reward_model.epochs"),
    ],
)
def test_a_round_body_is_read_strictly_and_a_coerced_value_starts_nothing(
    db_session: Session,
    rounds_api: RoundsApi,
    ready_project: Project,
    body: dict[str, Any],
    field: str,
) -> None:
    """Each body would start a round if "3" were read as 3 (the project can run one)."""
    api = rounds_api(ready_project)

    response = api.post(body)

    assert response.status_code == 422, response.text
    assert [d["field"] for d in error_of(response)["details"]] == [field]
    assert round_count(db_session) == 0
    assert api.sent_stages == []


def test_a_strict_round_body_with_json_types_starts_the_round(
    rounds_api: RoundsApi, ready_project: Project
) -> None:
    """Integers where numbers are declared, and nested settings, are what the schema says."""
    response = rounds_api(ready_project).post(
        {"type": "reward_ppo", "max_kl": 20, "ppo": {"adaptive_kl": True, "steps": 5}}
    )

    assert response.status_code == 201, response.text
    assert response.json()["config"]["max_kl"] == 20.0
    assert response.json()["config"]["ppo"]["adaptive_kl"] is True


def test_a_browser_gets_the_error_page_for_a_page_that_does_not_exist(
    client: httpx.Client,
) -> None:
    response = client.get("/no-such-page", headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-status="404"' in response.text
