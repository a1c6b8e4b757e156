"""Rounds through a real Celery worker (embedded broker on SQLite runs, Redis on PostgreSQL)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import (
    PolicyStatus,
    PolicyVersion,
    RewardModelVersion,
    RoundState,
    Sample,
    SamplingJob,
    TrainingRound,
)
from app.ratings import repository as ratings_repository
from app.rounds import service
from tests.conftest import FreshDatabase, wait_until
from tests.factories import job_tasks, task_shows
from tests.rounds.seed import commit_ranked_project, seed_ranked_project

Seeded = tuple[int, Path]


def _state(db: FreshDatabase, round_id: int) -> TrainingRound:
    with db.session() as session:
        training_round = session.get(TrainingRound, round_id)
        assert training_round is not None
        return training_round


@pytest.fixture
def on_model_copy(app_database: FreshDatabase, tiny_model_path: Path, tmp_path: Path) -> Seeded:
    """A ranked project (committed) on a copy of the tiny model that a test can take away after
    its round has started: (project id, the copy's path)."""
    model = Path(shutil.copytree(tiny_model_path, tmp_path / "model"))
    return commit_ranked_project(app_database, model), model


def test_a_round_whose_stage_raises_ends_failed_with_one_line_and_no_version(
    app_database: FreshDatabase,
    worker_process: subprocess.Popen[bytes],
    on_model_copy: Seeded,
    tmp_path: Path,
) -> None:
    project_id, model = on_model_copy
    with app_database.session() as session:
        training_round = service.start_round(
            session, project_id=project_id, round_type="reward_ppo"
        )
        # The base model was there when the round started; the workers cannot read it now.
        (model / "config.json").unlink()
        session.commit()  # the stage is sent to the worker after this commit
        round_id = training_round.id

    wait_until(lambda: _state(app_database, round_id).state.is_terminal, 120, "the round")
    ended = _state(app_database, round_id)
    assert ended.state == RoundState.failed
    assert ended.error is not None
    assert "\n" not in ended.error
    assert ended.error.startswith("The base model could not be loaded while training the reward")
    assert "start a new round" in ended.error
    assert ended.error_detail is not None
    assert ended.error_detail.startswith("Traceback")
    assert str(tmp_path) not in ended.error + ended.error_detail
    assert "site-packages" not in ended.error_detail
    assert ended.finished_at is not None
    with app_database.session() as session:
        versions = session.scalar(
            select(func.count()).where(PolicyVersion.project_id == project_id)
        )
        assert versions == 1  # only the base version
    assert worker_process.poll() is None


def test_a_cancelled_round_never_runs_its_stages(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes], on_model_copy: Seeded
) -> None:
    project_id, model = on_model_copy
    with app_database.session() as session:
        cancelled = service.start_round(session, project_id=project_id, round_type="reward_ppo")
        service.cancel_round(session, round_id=cancelled.id)
        session.commit()
        # The project is free again; the worker takes messages in order, so once this second
        # round has ended, the cancelled round's message has been consumed too.
        second = service.start_round(session, project_id=project_id, round_type="reward_ppo")
        (model / "config.json").unlink()  # so the second round ends soon (failed)
        session.commit()
        cancelled_id, second_id = cancelled.id, second.id
    wait_until(lambda: _state(app_database, second_id).state.is_terminal, 120, "round 2")
    ended = _state(app_database, cancelled_id)
    assert ended.state == RoundState.cancelled
    assert ended.started_at is None
    assert _state(app_database, second_id).started_at is not None


# A round small enough for CPU: a 2-layer model, 2 RM epochs, 2 PPO updates of 4 prompts.
TINY_ROUND = {
    "seed": 0,
    "eval_prompts": 2,
    "max_kl": 1000.0,
    "min_score_gain": -1000.0,  # the gate passes: this test is about the loop, not the gain
    "min_accuracy_low": 0.0,  # a few hand-made rankings: no reward model is sure of them
    "reward_model": {"epochs": 2, "max_length": 64},
    "ppo": {
        "steps": 2,
        "batch_size": 4,
        "mini_batch_size": 2,
        "ppo_epochs": 1,
        "max_new_tokens": 6,
    },
}


def test_a_full_round_registers_a_new_current_version_and_samples_it(
    app_database: FreshDatabase,
    worker_process: subprocess.Popen[bytes],
    tiny_model_path: Path,
) -> None:
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        base = session.scalars(
            select(PolicyVersion).where(PolicyVersion.project_id == project_id)
        ).one()
        training_round = service.start_round(
            session, project_id=project_id, round_type="reward_ppo", config=TINY_ROUND
        )
        session.commit()
        round_id, base_id = training_round.id, base.id

    wait_until(lambda: _state(app_database, round_id).state.is_terminal, 240, "the full round")
    ended = _state(app_database, round_id)
    assert ended.state == RoundState.done, ended.error
    assert ended.error is None
    assert ended.progress["stage"] == "done"
    # progress rows advanced through both training stages: one chart point per RM epoch and
    # per PPO update, and the gate's numbers stored
    assert [p["step"] for p in ended.metrics["reward_model"]] == [1, 2]
    assert [p["step"] for p in ended.metrics["policy"]] == [1, 2]
    assert all("kl" in p and "score" in p for p in ended.metrics["policy"])
    assert ended.metrics["gate"]["passed"] is True
    assert ended.metrics["reward_model_summary"]["n_train"] > 0
    # the reward model was trained on the project's base and nothing is merged into the
    # policy's: PPO scored with it as a second adapter on the policy's own base weights
    assert ended.metrics["candidate"]["reward_model_on_policy_base"] is True

    with app_database.session() as session:
        rm = session.scalars(
            select(RewardModelVersion).where(RewardModelVersion.round_id == round_id)
        ).one()
        assert rm.snapshot_id == ended.snapshot_id is not None
        versions = ratings_repository.versions(session, project_id)
        assert [(v.number, v.status) for v in versions] == [
            (1, PolicyStatus.retired),
            (2, PolicyStatus.current),
        ]
        new = versions[1]
        assert new.parent_id == base_id
        assert new.round_id == round_id
        assert new.reward_model_version_id == rm.id
        assert new.snapshot_id == ended.snapshot_id
        assert new.artifact_uri

        # back into the queue: the sampling stage generated the new version's samples, and
        # each new task shows 2 of them next to 2 samples of the previous version
        job = session.scalars(select(SamplingJob).where(SamplingJob.round_id == round_id)).one()
        assert job.policy_version_id == new.id
        assert (job.state.value, job.prompts_done) == ("done", job.prompts_total)
        assert job.prompts_total == 12
        new_samples = session.scalar(select(func.count()).where(Sample.policy_version_id == new.id))
        assert new_samples == 12 * 2
        tasks = job_tasks(session, job.id)
        assert len(tasks) == 12
        for task in tasks:
            versions_shown = task_shows(session, task.id, Sample.policy_version_id)
            assert sorted(versions_shown) == sorted([new.id, new.id, base_id, base_id])
    assert worker_process.poll() is None
