"""The promotion gate through the plain stage functions (no Celery) on the tiny model: a
candidate that misses the bounds is registered for the record, the round ends rejected with
the gate's numbers, and the previous version stays current with no new samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import func, select

from app.models import PolicyStatus, RoundState, Sample, TrainingRound
from app.ratings import repository as ratings_repository
from app.rounds import service
from tests.conftest import FreshDatabase
from tests.rounds.seed import commit_ranked_project
from worker.jobs.rounds import run_round

SMALL_ROUND: dict[str, Any] = {
    "seed": 0,
    "eval_prompts": 2,
    "gate_samples": 3,
    "max_kl": 1000.0,
    "min_accuracy_low": 0.0,  # a few hand-made rankings: no reward model is sure of them
    "reward_model": {"epochs": 1, "max_length": 64},
    "ppo": {"steps": 1, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
            "max_new_tokens": 6},
}  # fmt: skip


def _start(db: FreshDatabase, project_id: int, config: dict[str, Any]) -> int:
    """Starts a reward_ppo round with `config`, not enqueued (the test runs its stages): its id."""
    with db.session() as session:
        started = service.start_round(
            session, project_id=project_id, round_type="reward_ppo", config=config, enqueue=False
        )
        session.commit()
        return started.id


def test_a_candidate_below_the_gain_bound_is_rejected_and_the_previous_version_stays(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id = commit_ranked_project(app_database, tiny_model_path)
    # No policy gains 1000 standard deviations of reward in one update.
    round_id = _start(app_database, project_id, {**SMALL_ROUND, "min_score_gain": 1000.0})
    with app_database.session() as session:
        samples_before = session.scalar(select(func.count(Sample.id)))

    run_round(round_id, "reward_model")

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.rejected
        gate = ended.metrics["gate"]
        assert gate["passed"] is False
        assert gate["gate_samples"] == 3
        assert gate["score_gain_low"] <= gate["score_gain"] <= gate["score_gain_high"]
        assert gate["score_gain"] < 1000.0
        assert ended.error is not None
        assert "gain" in ended.error
        assert "interval" in ended.error
        versions = ratings_repository.versions(session, project_id)
        # The candidate is kept with its lineage, but the starting version stays current.
        assert [(v.number, v.status) for v in versions] == [
            (1, PolicyStatus.current),
            (2, PolicyStatus.rejected),
        ]
        assert versions[1].round_id == round_id
        assert session.scalar(select(func.count(Sample.id))) == samples_before  # not sampled


def test_a_cancel_during_the_gate_registers_nothing_and_ends_the_round_cancelled(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's cancel lands while the gate measures the candidate: the version the gate
    would have promoted must not replace the current one."""
    import worker.training.evaluation as evaluation

    project_id = commit_ranked_project(app_database, tiny_model_path)
    # The gate would pass.
    round_id = _start(app_database, project_id, {**SMALL_ROUND, "min_score_gain": -1000.0})

    measure_kl = evaluation.mean_kl_to_reference

    def measure_then_admin_cancels(*args: Any, **kwargs: Any) -> float:
        kl = measure_kl(*args, **kwargs)
        with app_database.session() as session:  # another request, its own transaction
            service.cancel_round(session, round_id=round_id)
            session.commit()
        return kl

    monkeypatch.setattr(evaluation, "mean_kl_to_reference", measure_then_admin_cancels)
    run_round(round_id, "reward_model")

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.cancelled
        assert "gate" not in ended.metrics
        versions = ratings_repository.versions(session, project_id)
        assert [(v.number, v.status) for v in versions] == [(1, PolicyStatus.current)]


def test_a_dpo_gate_without_held_out_pairs_gives_a_reason_not_a_crash() -> None:
    from app.rounds.gate import decide

    gate = {"kl": 0.1, "max_kl": 25.0, "heldout_accuracy": None, "min_heldout_accuracy": 0.5}

    passed, reasons = decide(gate, {"max_kl": 25.0})

    assert not passed
    assert "no held-out pairs" in reasons[0]


def test_a_round_whose_reward_model_is_at_chance_needs_more_data_and_registers_nothing(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    """Two annotators rank every task in opposite orders: no reward model can do better than
    chance on held-out rankings, so nothing may be trained on it."""
    from app.models import PolicyVersion, RewardModelVersion
    from app.projects.service import add_prompts
    from tests.factories import (
        make_model_project,
        make_ranking,
        make_task,
        make_user,
        task_sample_ids,
    )

    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=6)
        one, other = make_user(session), make_user(session)
        prompts = add_prompts(
            session,
            project_id=project.id,
            contents=[f"Say something about {i}." for i in range(12)],
        ).added
        for i, prompt in enumerate(prompts):
            task = make_task(
                session, project, texts=[f"answer {i} {w}" for w in "abcd"], prompt=prompt
            )
            ids = task_sample_ids(session, task)
            make_ranking(session, task, one, [[sid] for sid in ids])
            make_ranking(session, task, other, [[sid] for sid in reversed(ids)])
        training_round = service.start_round(
            session,
            project_id=project.id,
            round_type="reward_ppo",
            config={**SMALL_ROUND, "min_accuracy_low": 0.5},
            enqueue=False,
        )
        session.commit()
        round_id, project_id = training_round.id, project.id

    run_round(round_id, "reward_model")

    with app_database.session() as session:
        ended = session.get_one(TrainingRound, round_id)
        assert ended.state == RoundState.needs_more_data
        assert ended.error is not None
        assert "Needs more data" in ended.error
        assert "more" in ended.error
        assert ended.metrics["reward_model_summary"]["heldout_accuracy"] == 0.5
        assert ended.metrics["signal"]["accuracy"] == 0.5  # both reward models, pooled
        versions = session.scalars(
            select(PolicyVersion).where(PolicyVersion.project_id == project_id)
        ).all()
        assert [v.number for v in versions] == [1]  # only the base: no candidate
        registered = select(func.count(RewardModelVersion.id)).where(
            RewardModelVersion.project_id == project_id
        )
        assert session.scalar(registered) == 0
        # The project is free for the next round (needs_more_data is a terminal state).
        again = service.start_round(
            session, project_id=project_id, round_type="reward_ppo", enqueue=False
        )
        assert again.number == 2


def test_a_round_started_again_after_a_rejection_trains_a_different_candidate(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    """With no seed set, each round draws its own (from its id): trying again after a
    rejection is a new try, not the rejected candidate reproduced bit for bit."""
    from safetensors.torch import load_file

    from app.artifacts import get_store

    config = {k: v for k, v in SMALL_ROUND.items() if k != "seed"}
    config["min_score_gain"] = 1000.0  # rejected, so the second round starts from the same base
    project_id = commit_ranked_project(app_database, tiny_model_path)
    candidates = []
    for _ in range(2):
        round_id = _start(app_database, project_id, config)
        run_round(round_id, "reward_model")
        with app_database.session() as session:
            ended = session.get_one(TrainingRound, round_id)
            assert ended.state == RoundState.rejected
            candidates.append((ended.config["seed"], ended.metrics["candidate"]["adapter_uri"]))

    (seed_a, uri_a), (seed_b, uri_b) = candidates
    assert seed_a != seed_b
    weights = [
        load_file(next(Path(get_store().local_dir(uri)).rglob("adapter_model.safetensors")))
        for uri in (uri_a, uri_b)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
