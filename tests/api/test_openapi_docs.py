"""The served OpenAPI schema documents the API the way clients see it: the one error shape,
and a response example on every JSON endpoint (the leaderboard's matching its model)."""

from __future__ import annotations

from typing import Any

import pytest

from app.main import create_app
from app.ratings.api import LEADERBOARD_EXAMPLE
from app.ratings.schemas import LeaderboardOut


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app().openapi()


def _api_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in operations.items()
    ]


def _has_example(media: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """An example on the media type, on its schema, or on the items of a page of results."""
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema", {})
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        if "example" in schema or "examples" in schema:
            return True
        schema = schema.get("properties", {}).get("items", {}).get("items", {})
    return False


def test_the_schema_documents_the_api_alone(spec: dict[str, Any]) -> None:
    """Pages and their forms (/login, /logout, /annotate…, /admin/…) are no API."""
    assert spec["paths"]
    assert [path for path in spec["paths"] if not path.startswith("/api/v1/")] == []


def test_every_api_operation_documents_the_errors_every_request_can_get(
    spec: dict[str, Any],
) -> None:
    missing = [
        f"{method} {path} {status}"
        for method, path, operation in _api_operations(spec)
        for status in ("401", "403", "404", "422", "429")
        if status not in operation["responses"]
    ]
    assert missing == []


def test_the_raw_body_imports_document_the_size_limit(spec: dict[str, Any]) -> None:
    for kind in ("prompts", "demonstrations", "samples"):
        responses = spec["paths"][f"/api/v1/projects/{{project_id}}/{kind}"]["post"]["responses"]
        assert "413" in responses


def test_every_api_error_response_uses_the_one_error_shape(spec: dict[str, Any]) -> None:
    wrong = [
        f"{method} {path} {status}"
        for method, path, operation in _api_operations(spec)
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5"))
        and response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        != "#/components/schemas/ErrorResponse"
    ]
    assert wrong == []


def test_every_api_json_response_has_an_example(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    missing = [
        f"{method} {path} {status}"
        for method, path, operation in _api_operations(spec)
        for status, response in operation["responses"].items()
        if status.startswith("2")
        and "application/json" in response.get("content", {})
        and not _has_example(response["content"]["application/json"], schemas)
    ]
    assert missing == []


def _without_nulls(value: Any) -> Any:
    """How FastAPI serves an example: it drops null members (exclude_none on the document)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_the_leaderboard_example_is_served_and_matches_its_model(spec: dict[str, Any]) -> None:
    response = spec["paths"]["/api/v1/projects/{project_id}/leaderboard"]["get"]["responses"]
    served = response["200"]["content"]["application/json"]["example"]
    assert served == _without_nulls(LEADERBOARD_EXAMPLE)
    board = LeaderboardOut.model_validate(LEADERBOARD_EXAMPLE)
    assert [v.rating for v in board.versions] == sorted(
        (v.rating for v in board.versions if v.rating is not None), reverse=True
    )


def test_the_start_round_examples_cover_every_built_in_round_type_and_validate() -> None:
    """An example a client copies from the docs must be accepted as it is."""
    from app.api.routes import ROUND_EXAMPLES
    from app.rounds.types import BUILTIN

    assert sorted(ROUND_EXAMPLES) == sorted(spec.name for spec in BUILTIN)
    for spec_ in BUILTIN:
        value = ROUND_EXAMPLES[spec_.name]["value"]
        assert value["type"] == spec_.name
        spec_.config.model_validate(value)
