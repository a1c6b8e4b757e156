"""The three uses of judge rankings (suggestions, training data, exports) and the judge's
harm suggestions: each follows its project setting, and judge rows never slip in by default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Comparison, Project, RankingTask, SampleFlag, SnapshotComparison, User
from app.rounds import snapshots
from app.rounds.types.reward_ppo import RewardPPOConfig
from tests.conftest import FreshDatabase
from tests.factories import (
    add_comparisons,
    make_project,
    make_ranking,
    make_task,
    make_user,
    task_sample_ids,
)


def make_judge_user(session: Session) -> User:
    """The users row a judge ranks as (kind 'model')."""
    return make_user(session, kind="model")


def make_ai_ranking(
    session: Session, task: RankingTask, judge_user: User, groups: list[list[int]], **fields: Any
) -> Any:
    """A judge's stored ranking: the ranking and its comparisons marked source 'ai'."""
    from app.models import Ranking

    ranking = Ranking(
        project_id=task.project_id,
        task_id=task.id,
        user_id=judge_user.id,
        groups=groups,
        source="ai",
        **fields,
    )
    session.add(ranking)
    session.flush()
    add_comparisons(session, ranking, task, source="ai")
    session.flush()
    return ranking


def _weights_by_source(session: Session, snapshot_id: int) -> dict[str, set[float]]:
    rows = session.execute(
        select(Comparison.source, SnapshotComparison.weight)
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .where(SnapshotComparison.snapshot_id == snapshot_id)
    ).all()
    found: dict[str, set[float]] = {}
    for source, weight in rows:
        found.setdefault(source, set()).add(float(weight))
    return found


def _project_ranked_by_both(session: Session, **settings: Any) -> Project:
    """One task ranked by a person (3 pairs) and by a judge (3 pairs, the reverse order)."""
    project = make_project(session, **settings)
    task = make_task(session, project, k=3)
    a, b, c = task_sample_ids(session, task)
    make_ranking(session, task, make_user(session), [[a], [b], [c]])
    make_ai_ranking(session, task, make_judge_user(session), [[c], [b], [a]])
    return project


# Training data


def test_snapshot_leaves_judge_comparisons_out_at_weight_zero(db_session: Session) -> None:
    project = _project_ranked_by_both(db_session)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="default")

    assert _weights_by_source(db_session, snapshot.id) == {"human": {1.0}}
    assert snapshot.criteria["judge_comparisons"] == "left out"


def test_snapshot_weighs_judge_comparisons_by_the_project_judge_weight(
    db_session: Session,
) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.5)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="weighted")

    assert _weights_by_source(db_session, snapshot.id) == {"human": {1.0}, "ai": {0.5}}
    assert snapshot.comparison_count == 6
    assert snapshot.criteria["judge_comparisons"] == "weight 0.5"
    weights = sorted(r.weight for r in snapshots.ranked_responses(db_session, snapshot.id))
    assert weights == [0.5, 1.0]


def test_round_judge_settings_override_the_project(db_session: Session) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.5)

    none = snapshots.create_snapshot(db_session, project_id=project.id, name="r", judge_weight=0)
    more = snapshots.create_snapshot(db_session, project_id=project.id, name="r2", judge_weight=2)

    assert _weights_by_source(db_session, none.id) == {"human": {1.0}}
    assert _weights_by_source(db_session, more.id) == {"human": {1.0}, "ai": {2.0}}


def test_judge_only_snapshot_carries_only_judge_comparisons_at_weight_one(
    db_session: Session,
) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.3)

    by_round = snapshots.create_snapshot(
        db_session, project_id=project.id, name="rlaif", judge_only=True
    )
    project.judge_only = True
    by_project = snapshots.create_snapshot(db_session, project_id=project.id, name="rlaif 2")

    for snapshot in (by_round, by_project):
        assert _weights_by_source(db_session, snapshot.id) == {"ai": {1.0}}
        assert snapshot.criteria["judge_comparisons"] == "only (weight 1)"


def test_reward_model_round_configs_take_the_optional_judge_settings() -> None:
    config = RewardPPOConfig.model_validate({"judge_weight": 0.25, "judge_only": False})
    assert (config.judge_weight, config.judge_only) == (0.25, False)
    assert RewardPPOConfig().judge_weight is None  # blank: the project's


def test_suggested_harmful_flags_keep_samples_in_training_but_harmful_ones_do_not(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    person, judge = make_user(db_session), make_judge_user(db_session)
    task = make_task(db_session, project, k=3)
    a, b, c = task_sample_ids(db_session, task)
    make_ranking(db_session, task, person, [[a], [b], [c]])
    db_session.add(SampleFlag(sample_id=c, user_id=judge.id, kind="suggested_harmful"))
    db_session.flush()
    suggested = snapshots.create_snapshot(db_session, project_id=project.id, name="suggested")

    db_session.add(SampleFlag(sample_id=c, user_id=person.id, reason="unsafe"))
    db_session.flush()
    flagged = snapshots.create_snapshot(db_session, project_id=project.id, name="flagged")

    assert suggested.comparison_count == 3
    assert flagged.comparison_count == 1  # only a > b remains


# Exports


@dataclass
class ExportWorld:
    project: int
    token: str
    human_ranking: int
    ai_ranking: int


@pytest.fixture(scope="module")
def export_world(app_database: FreshDatabase) -> ExportWorld:
    """Committed rows (the export streams through its own session): one task ranked by a
    person and by a judge."""
    from app.models import Judge, Role
    from app.tokens import service as tokens

    with app_database.session() as session:
        admin = make_user(session, role=Role.admin)
        project = make_project(session)
        task = make_task(session, project, k=3)
        a, b, c = task_sample_ids(session, task)
        person = make_ranking(session, task, make_user(session), [[a], [b], [c]])
        judge_user = make_judge_user(session)
        judge = Judge(
            project_id=project.id,
            user_id=judge_user.id,
            name="critic",
            backend="simulated",
            model="sim",
            prompt_version=3,
        )
        session.add(judge)
        session.flush()
        ai = make_ai_ranking(
            session, task, judge_user, [[c], [b], [a]], judge_id=judge.id, judge_prompt_version=3
        )
        token = tokens.create_token(
            session, name="export", scopes=["read"], created_by_id=admin.id
        ).secret
        world = ExportWorld(project.id, token, person.id, ai.id)
        session.commit()
    return world


@pytest.fixture(scope="module")
def export_api(app_database: FreshDatabase) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


def _export(api: TestClient, world: ExportWorld, kind: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(
        f"/api/v1/projects/{world.project}/{kind}.jsonl",
        params=params,
        headers={"Authorization": f"Bearer {world.token}", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_default_exports_hold_no_judge_rows(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    rankings = _export(export_api, export_world, "rankings")
    pairs = _export(export_api, export_world, "pairs")

    assert [(r["ranking_id"], r["source"]) for r in rankings] == [
        (export_world.human_ranking, "human")
    ]
    assert "judge" not in rankings[0]
    assert len(pairs) == 3
    assert {p["source"] for p in pairs} == {"human"}


def test_source_ai_exports_only_judge_rows_with_the_judge_and_prompt_version(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    (ranking,) = _export(export_api, export_world, "rankings", source="ai")
    pairs = _export(export_api, export_world, "pairs", source="ai")

    assert ranking["ranking_id"] == export_world.ai_ranking
    assert (ranking["source"], ranking["judge"], ranking["judge_prompt_version"]) == (
        "ai",
        "critic",
        3,
    )
    assert len(pairs) == 3
    assert {p["source"] for p in pairs} == {"ai"}


def test_source_all_exports_both_with_one_schema(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    rankings = _export(export_api, export_world, "rankings", source="all")
    pairs = _export(export_api, export_world, "pairs", source="all")

    assert [(r["source"], r["judge"], r["judge_prompt_version"]) for r in rankings] == [
        ("human", "", 0),
        ("ai", "critic", 3),
    ]
    assert sorted(p["source"] for p in pairs) == ["ai"] * 3 + ["human"] * 3


def test_an_unknown_source_is_422(export_api: TestClient, export_world: ExportWorld) -> None:
    for kind in ("rankings", "pairs"):
        response = export_api.get(
            f"/api/v1/projects/{export_world.project}/{kind}.jsonl",
            params={"source": "robots"},
            headers={"Authorization": f"Bearer {export_world.token}"},
        )
        assert response.status_code == 422
