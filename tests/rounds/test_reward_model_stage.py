"""The round's reward-model stage: normalised as `rankloop train-reward-model` normalises, on the
reference policy's samples, and a cancel during training ends the round cancelled."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.artifacts import get_store
from app.db import session_scope
from app.models import Project, RewardModelVersion, RoundState, TrainingRound
from app.rounds import lineage, service
from app.rounds.service import StageStart, parse_config
from rankloop.cli import app
from tests.conftest import FreshDatabase
from tests.factories import make_round, make_task
from tests.rounds.seed import seed_ranked_project
from worker.jobs import rounds as round_jobs
from worker.training.outcomes import TrainingCancelled

RM_SETTINGS = {"epochs": 2, "max_length": 64}


def _round_on_ranked_project(db: FreshDatabase, tiny_model_path: Path) -> tuple[int, int]:
    """(project id, round id): a queued reward_ppo round whose gate takes any signal."""
    with db.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        project = session.get(Project, project_id)
        assert project is not None
        # Samples of the reference policy (version 1) that nobody ranked: normalising on the
        # reference's samples and normalising on the annotated ones give different scales.
        make_task(session, project, texts=["good good good good good", "no"])
        config = parse_config("reward_ppo", {"reward_model": RM_SETTINGS, "min_accuracy_low": 0})
        round_id = make_round(session, project, "reward_ppo", config={**config, "seed": 0}).id
        session.commit()
    return project_id, round_id


def _reward_models(db: FreshDatabase, project_id: int) -> list[RewardModelVersion]:
    with db.session() as session:
        return list(
            session.scalars(
                select(RewardModelVersion)
                .where(RewardModelVersion.project_id == project_id)
                .order_by(RewardModelVersion.number)
            )
        )


@pytest.mark.slow
def test_the_round_and_the_command_line_normalise_on_the_reference_samples_alike(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    from worker.training.models import load_tokenizer
    from worker.training.reward_model import load_reward_model, score

    project_id, round_id = _round_on_ranked_project(app_database, tiny_model_path)

    assert round_jobs.run_stage(round_id, "reward_model") == "policy"
    command = ["train-reward-model", "--project", str(project_id), "--epochs", "2"]
    cli = CliRunner().invoke(app, [*command, "--max-length", "64"])

    assert cli.exit_code == 0, cli.output
    by_round, by_cli = _reward_models(app_database, project_id)
    assert by_round.round_id == round_id
    assert by_cli.round_id is None
    assert by_cli.norm_mean == pytest.approx(by_round.norm_mean, abs=1e-5)
    assert by_cli.norm_std == pytest.approx(by_round.norm_std, abs=1e-5)
    with app_database.session() as session:
        prompts, responses = lineage.reference_samples(session, project_id=project_id)
    rm_dir = get_store().local_dir(by_round.artifact_uri)
    rm = load_reward_model(rm_dir, device="cpu")
    rewards = score(rm, load_tokenizer(str(rm_dir)), prompts, responses, max_length=64)
    assert statistics.fmean(rewards) == pytest.approx(0.0, abs=1e-4)
    assert statistics.stdev(rewards) == pytest.approx(1.0, abs=1e-4)


def test_a_cancel_during_reward_model_training_ends_the_round_cancelled_unregistered(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, round_id = _round_on_ranked_project(app_database, tiny_model_path)
    raised: list[BaseException] = []

    def cancel_then_train(start: StageStart, reporter: round_jobs.StageReporter) -> None:
        # The admin cancels once the stage runs; the trainer sees it at its first progress.
        with session_scope() as session:
            service.cancel_round(session, round_id=start.round_id)
        try:
            round_jobs.reward_model_stage(start, reporter)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setitem(round_jobs.STAGES, "reward_model", cancel_then_train)

    assert round_jobs.run_stage(round_id, "reward_model") is None

    assert len(raised) == 1
    assert isinstance(raised[0], TrainingCancelled)
    assert raised[0].steps_done == 1
    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.cancelled
        assert ended.error is None
    assert _reward_models(app_database, project_id) == []
