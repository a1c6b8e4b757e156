"""Exports leave gold tasks' rankings out unless include_gold=true (the real streaming path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.gold import service as gold
from app.models import Role
from app.tokens import service as tokens
from tests.api.conftest import bearer
from tests.conftest import FreshDatabase
from tests.export.seed import add_ranking
from tests.factories import make_project, make_task, make_user, task_sample_ids


@dataclass(frozen=True)
class World:
    project: int
    normal_task: int
    gold_task: int
    token: str


@pytest.fixture(scope="module")
def world(app_database: FreshDatabase) -> World:
    with app_database.session() as session:
        admin = make_user(session, role=Role.admin)
        annotator = make_user(session)
        project = make_project(session)
        normal, gold_task = make_task(session, project), make_task(session, project)
        for task in (normal, gold_task):
            add_ranking(session, task, annotator.id, [[i] for i in task_sample_ids(session, task)])
        gold.mark_gold(
            session,
            project_id=project.id,
            task_id=gold_task.id,
            bad_sample_id=task_sample_ids(session, gold_task)[0],
        )
        secret = tokens.create_token(
            session, name="gold", scopes=["read"], created_by_id=admin.id
        ).secret
        session.commit()
        return World(project.id, normal.id, gold_task.id, secret)


@pytest.fixture(scope="module")
def api(app_database: FreshDatabase) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


def _lines(api: TestClient, world: World, kind: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(
        f"/api/v1/projects/{world.project}/{kind}.jsonl",
        params=params,
        headers=bearer(world.token),
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_training_pairs_leave_gold_tasks_out_by_default(api: TestClient, world: World) -> None:
    lines = _lines(api, world, "pairs")
    assert len(lines) == 6  # the normal task's C(4, 2) pairs only
    prompt_ids = {line["prompt_id"] for line in lines}
    assert len(prompt_ids) == 1


def test_include_gold_puts_gold_pairs_in(api: TestClient, world: World) -> None:
    assert len(_lines(api, world, "pairs", include_gold="true")) == 12


def test_rankings_leave_gold_tasks_out_unless_asked(api: TestClient, world: World) -> None:
    assert [line["task_id"] for line in _lines(api, world, "rankings")] == [world.normal_task]
    with_gold = _lines(api, world, "rankings", include_gold="true")
    assert sorted(line["task_id"] for line in with_gold) == sorted(
        [world.normal_task, world.gold_task]
    )


def test_include_gold_is_documented_in_the_openapi_description(api: TestClient) -> None:
    spec = api.app.openapi()  # type: ignore[attr-defined]
    params = spec["paths"]["/api/v1/projects/{project_id}/pairs.jsonl"]["get"]["parameters"]
    [include_gold] = [p for p in params if p["name"] == "include_gold"]
    assert "gold" in include_gold["description"]
