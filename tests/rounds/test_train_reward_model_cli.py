"""`rankloop train-reward-model`: the round's reward-model stage, run in process from the CLI."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.artifacts import get_store
from app.models import (
    ComparisonSnapshot,
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Project,
    RewardModelVersion,
)
from rankloop.cli import app
from tests.conftest import FreshDatabase
from tests.factories import make_project, make_version
from tests.rounds.seed import commit_ranked_project, seed_ranked_project


def _empty_project(db: FreshDatabase) -> int:
    """A committed project with nothing in it: its id."""
    with db.session() as session:
        project_id = make_project(session).id
        session.commit()
        return project_id


def _count(db: FreshDatabase, model: type, project_id: int) -> int:
    with db.session() as session:
        return int(
            session.scalar(select(func.count()).where(model.project_id == project_id))  # type: ignore[attr-defined]
            or 0
        )


def test_train_reward_model_registers_a_version_on_a_snapshot(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id = commit_ranked_project(app_database, tiny_model_path, prompts=8)
    result = CliRunner().invoke(
        app,
        ["train-reward-model", "--project", str(project_id), "--epochs", "2", "--max-length", "64"],
    )
    assert result.exit_code == 0, result.output
    assert "Reward model version 1 registered" in result.output
    assert "epoch 2:" in result.output
    with app_database.session() as session:
        rm = session.scalars(
            select(RewardModelVersion).where(RewardModelVersion.project_id == project_id)
        ).one()
        snapshot = session.get(ComparisonSnapshot, rm.snapshot_id)
        assert snapshot is not None
        assert snapshot.comparison_count == 8 * 6  # C(4,2) pairs per ranking
        assert rm.round_id is None
        assert rm.base_model == str(tiny_model_path)
        assert [e["epoch"] for e in rm.metrics["epochs"]] == [1, 2]
        assert rm.metrics["n_train"] + rm.metrics["n_heldout"] == 8
        assert rm.norm_std > 0
        assert (get_store().local_dir(rm.artifact_uri)).is_dir()
    # a second run is a new version on a new snapshot
    again = CliRunner().invoke(
        app, ["train-reward-model", "--project", str(project_id), "--epochs", "1"]
    )
    assert again.exit_code == 0, again.output
    assert _count(app_database, RewardModelVersion, project_id) == 2


def test_train_reward_model_after_a_previous_reference_round_trains_on_the_base(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    # The current version merges an earlier round's adapter (reference 'previous'): a reward
    # model still sits on the plain base, so round 3 of a 'previous' loop must not be refused.
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path, prompts=8)
        project = session.get(Project, project_id)
        assert project is not None
        for version in session.scalars(
            select(PolicyVersion).where(PolicyVersion.project_id == project_id)
        ):
            version.status = PolicyStatus.retired
        session.flush()
        make_version(
            session,
            project,
            kind=PolicyKind.trained,
            status=PolicyStatus.current,
            artifact_uri="mem://v3-adapter",
            metrics={"merged_adapters": ["mem://v2-adapter"]},
        )
        session.commit()
    result = CliRunner().invoke(
        app,
        ["train-reward-model", "--project", str(project_id), "--epochs", "1", "--max-length", "64"],
    )
    assert result.exit_code == 0, result.output
    with app_database.session() as session:
        rm = session.scalars(
            select(RewardModelVersion).where(RewardModelVersion.project_id == project_id)
        ).one()
        assert rm.base_model == str(tiny_model_path)


def test_train_reward_model_without_rankings_fails_and_writes_nothing(
    app_database: FreshDatabase,
) -> None:
    project_id = _empty_project(app_database)
    result = CliRunner().invoke(app, ["train-reward-model", "--project", str(project_id)])
    assert result.exit_code == 1
    assert "needs rankings" in result.output
    assert _count(app_database, RewardModelVersion, project_id) == 0
    assert _count(app_database, ComparisonSnapshot, project_id) == 0


def test_train_reward_model_refuses_bad_settings_and_unknown_projects(
    app_database: FreshDatabase,
) -> None:
    project_id = _empty_project(app_database)
    bad = CliRunner().invoke(
        app, ["train-reward-model", "--project", str(project_id), "--heldout-fraction", "1.5"]
    )
    assert bad.exit_code == 1
    assert "--heldout-fraction" in bad.output
    assert _count(app_database, ComparisonSnapshot, project_id) == 0
    missing = CliRunner().invoke(app, ["train-reward-model", "--project", "no such project"])
    assert missing.exit_code == 1
    assert "No project" in missing.output
