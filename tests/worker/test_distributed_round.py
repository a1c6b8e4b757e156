"""A whole PPO round with RANKLOOP_TRAIN_PROCS=2 through the plain stage functions (no Celery):
the reward model and PPO each run as 2 CPU processes under torchrun, and the round ends as the
same round in one process does: a reward model version, a new current policy version with its
lineage, the same summary keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.models import PolicyStatus, PolicyVersion, RewardModelVersion, RoundState, TrainingRound
from app.ratings import repository as ratings_repository
from app.rounds import service
from tests.conftest import FreshDatabase
from tests.rounds.seed import seed_ranked_project
from tests.rounds.test_round_worker import TINY_ROUND
from worker.jobs.rounds import run_round


def run_ppo_round(
    app_database: FreshDatabase, tiny_model_path: Path, procs: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Seed a project, run a reward_ppo round on `procs` processes: what it registered."""
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        base_id = session.scalars(
            select(PolicyVersion.id).where(PolicyVersion.project_id == project_id)
        ).one()
        round_id = service.start_round(
            session, project_id=project_id, round_type="reward_ppo", config=TINY_ROUND,
            enqueue=False,
        ).id  # fmt: skip
        session.commit()
    monkeypatch.setenv("RANKLOOP_TRAIN_PROCS", str(procs))
    get_settings.cache_clear()
    try:
        run_round(round_id, "reward_model")
    finally:
        monkeypatch.delenv("RANKLOOP_TRAIN_PROCS")
        get_settings.cache_clear()

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.done, ended.error
        rm = session.scalars(
            select(RewardModelVersion).where(RewardModelVersion.round_id == round_id)
        ).one()
        versions = ratings_repository.versions(session, project_id)
        return {
            "round": ended,
            "statuses": [(v.number, v.status) for v in versions],
            "lineage": (versions[-1].parent_id, versions[-1].round_id,
                        versions[-1].reward_model_version_id, versions[-1].snapshot_id),
            "expected_lineage": (base_id, round_id, rm.id, ended.snapshot_id),
            "artifact_uri": versions[-1].artifact_uri,
        }  # fmt: skip


@pytest.mark.slow
def test_a_ppo_round_on_two_processes_registers_a_version_as_one_process_does(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = run_ppo_round(app_database, tiny_model_path, 1, monkeypatch)
    two = run_ppo_round(app_database, tiny_model_path, 2, monkeypatch)

    for ran in (one, two):
        assert ran["statuses"] == [(1, PolicyStatus.retired), (2, PolicyStatus.current)]
        assert ran["lineage"] == ran["expected_lineage"]
        assert ran["artifact_uri"]
    alone, shared = one["round"], two["round"]
    assert shared.metrics["candidate"]["train_procs"] == 2
    assert [p["step"] for p in shared.metrics["policy"]] == [1, 2]  # rank 0's progress relayed
    assert [p["step"] for p in shared.metrics["reward_model"]] == [1, 2]
    assert shared.metrics["gate"]["passed"] is True
    # the same summary, whichever path trained it (train_procs is the distributed path's own)
    assert set(shared.metrics["candidate"]) - {"train_procs"} == set(alone.metrics["candidate"])
    assert set(shared.metrics["candidate"]["ppo"]) == set(alone.metrics["candidate"]["ppo"])
    assert set(shared.metrics) == set(alone.metrics)
