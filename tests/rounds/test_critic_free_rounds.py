"""RLOO and GRPO rounds: the form offers their own fields, blanks are sized from the project
(K = its samples per prompt), and a round through a real Celery worker registers a version
with its lineage."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import (
    PolicyStatus,
    PolicyVersion,
    Project,
    RewardModelVersion,
    RoundState,
    TrainingRound,
)
from app.ratings import repository as ratings_repository
from app.rounds import registry, service
from app.rounds.service import parse_config
from app.rounds.sizing import apply_sizing, size_round
from app.rounds.types.reward_grpo import RewardGRPOConfig
from app.rounds.types.reward_rloo import RewardRLOOConfig
from tests.conftest import FreshDatabase, wait_until
from tests.factories import make_project
from tests.rounds.conftest import tiny_critic_free_round
from tests.rounds.seed import seed_ranked_project
from worker.jobs.round_trainers import grpo_config, rloo_config


def test_the_form_shows_each_critic_free_type_its_own_fields(
    client: httpx.Client, project: Project
) -> None:
    for round_type, key in (("reward_rloo", "rloo"), ("reward_grpo", "grpo")):
        fragment = client.get(
            f"/admin/projects/{project.id}/rounds",
            params={"type": round_type},
            headers={"HX-Request": "true"},
        ).text
        for field in ("group_size", "batch_size", "epochs", "learning_rate", "clip_range",
                      "kl_coef", "kl_in"):  # fmt: skip
            assert f'name="{key}.{field}"' in fragment, (round_type, field)
        assert 'name="reward_model.epochs"' in fragment
        assert 'name="ppo.steps"' not in fragment
        assert "value_head" not in fragment
        assert ('name="grpo.dr_grpo"' in fragment) is (key == "grpo")


def test_blanks_are_sized_from_the_project_and_reach_the_trainer(db_session: Session) -> None:
    project = make_project(db_session, temperature=0.7, max_new_tokens=40, samples_per_prompt=5)

    for round_type in ("reward_rloo", "reward_grpo"):
        clean = parse_config(round_type, {"seed": 0})  # a round sizes it from its id
        sized = size_round(project, round_type=round_type, config=clean, prompts=80, rankings=80)
        config: Any = registry.get(round_type).parse(apply_sizing(clean, sized))
        if isinstance(config, RewardRLOOConfig):
            trainer: Any = rloo_config(config, stop_strings=None)
            assert trainer.kl_in == "reward"
        else:
            assert isinstance(config, RewardGRPOConfig)
            trainer = grpo_config(config, stop_strings=None)
            assert (trainer.kl_in, trainer.dr_grpo) == ("loss", False)
        assert (trainer.group_size, trainer.temperature, trainer.max_new_tokens) == (5, 0.7, 40)
        # as many rollouts as a PPO round (256 at least), in groups of 4 prompts × 5 answers
        assert trainer.steps == round(256 / 20)
        assert (trainer.lr, trainer.kl_coef, trainer.epochs) == (3e-4, 0.05, 4)  # PPO's
        assert config.sampling() == (0.7, 40)  # the gate samples as the policy was trained


def test_explicit_group_sizes_are_not_resized(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=5)
    clean = parse_config("reward_rloo", {"rloo": {"group_size": 3, "steps": 7}})

    sized = size_round(project, round_type="reward_rloo", config=clean, prompts=80, rankings=80)

    assert not {"rloo.group_size", "rloo.steps"} & set(sized)
    assert "rloo.temperature" in sized


def test_a_group_of_one_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_config("reward_grpo", {"grpo": {"group_size": 1}})
    assert "group_size" in str(refused.value.details)


def _tiny_round(key: str) -> dict[str, Any]:
    """tiny_critic_free_round with a reward model to train (any held-out accuracy passes)."""
    return tiny_critic_free_round(
        key, min_accuracy_low=0.0, reward_model={"epochs": 2, "max_length": 64}
    )


@pytest.mark.slow
@pytest.mark.parametrize(("round_type", "key"), [("reward_rloo", "rloo"), ("reward_grpo", "grpo")])
def test_a_critic_free_round_registers_a_new_current_version_with_its_lineage(
    app_database: FreshDatabase,
    worker_process: subprocess.Popen[bytes],
    tiny_model_path: Path,
    round_type: str,
    key: str,
) -> None:
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        # The briefly trained tiny model seldom writes EOS: a space ends its answers, so a
        # group holds answers that ended and answers cut off, which score apart (a group
        # scored alike, every answer given the missing-EOS score, has no advantage).
        project = session.get(Project, project_id)
        assert project is not None
        project.stop_strings = [" "]
        base = session.scalars(
            select(PolicyVersion).where(PolicyVersion.project_id == project_id)
        ).one()
        training_round = service.start_round(
            session, project_id=project_id, round_type=round_type, config=_tiny_round(key)
        )
        session.commit()
        round_id, base_id = training_round.id, base.id

    def ended() -> TrainingRound:
        with app_database.session() as session:
            found = session.get(TrainingRound, round_id)
            assert found is not None
            return found

    wait_until(lambda: ended().state.is_terminal, 240, f"the {round_type} round")
    done = ended()
    assert done.state == RoundState.done, (done.error, done.metrics.get("policy"))
    assert [p["step"] for p in done.metrics["policy"]] == [1, 2]
    assert all("kl" in p and "score" in p for p in done.metrics["policy"])
    candidate = done.metrics["candidate"]
    assert candidate[key]["steps_done"] == 2
    assert candidate[f"{key}_config"]["group_size"] == 4
    assert candidate["reward_model_on_policy_base"] is True
    assert done.metrics["gate"]["passed"] is True

    with app_database.session() as session:
        rm = session.scalars(
            select(RewardModelVersion).where(RewardModelVersion.round_id == round_id)
        ).one()
        versions = ratings_repository.versions(session, project_id)
        assert [(v.number, v.status) for v in versions] == [
            (1, PolicyStatus.retired),
            (2, PolicyStatus.current),
        ]
        new = versions[1]
        assert new.parent_id == base_id
        assert new.round_id == round_id
        assert new.reward_model_version_id == rm.id
        assert new.snapshot_id == done.snapshot_id is not None
        assert new.artifact_uri
    assert worker_process.poll() is None


@pytest.mark.parametrize("round_type", ["reward_rloo", "reward_grpo"])
@pytest.mark.parametrize(
    ("temperature", "max_new_tokens", "samples", "prompts", "rankings"),
    [(0.01, 1, 4, 0, 0), (5.0, 8192, 9, 4, 1), (1.0, 256, 4, 10**6, 10**6)],
)
def test_sized_values_are_within_the_bounds(
    db_session: Session,
    round_type: str,
    temperature: float,
    max_new_tokens: int,
    samples: int,
    prompts: int,
    rankings: int,
) -> None:
    project = make_project(
        db_session,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        samples_per_prompt=samples,
    )
    clean = parse_config(round_type, {})
    sized = size_round(
        project, round_type=round_type, config=clean, prompts=prompts, rankings=rankings
    )
    assert parse_config(round_type, apply_sizing(clean, sized))  # the form's bounds hold them
