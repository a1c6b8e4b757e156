"""A round type is one declaration (`app.rounds.registry.RoundTypeSpec`): a toy type registered
here runs through the state machine (start → begin → run → complete) with nothing else edited,
and the registry is as it was afterwards.

The round's type is stored as the registered name (no migration for a new type), so the toy
registers under its own name, "toy".
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from app.errors import InvalidInput
from app.models import RoundState, TrainingRound
from app.rounds import registry, service
from app.rounds.round_type import RoundTypeSpec, policy_stage
from app.rounds.schemas import RoundConfigBase
from tests.conftest import FreshDatabase
from tests.factories import make_ready_project
from worker.jobs.rounds import PolicyJob, describe_failure, run_stage

BUILT_IN = ["reward_ppo", "reward_rloo", "reward_grpo", "sft", "dpo"]


class ToyConfig(RoundConfigBase):
    """One setting of its own."""

    type: Literal["toy"] = "toy"
    metric: Annotated[float, Field(ge=0, le=1)] = 0.25


def train_toy(job: PolicyJob) -> dict[str, Any]:
    """Writes an empty adapter and reports its one setting as a metric."""
    assert isinstance(job.config, ToyConfig)
    job.out_dir.mkdir(parents=True)
    (job.out_dir / "adapter_config.json").write_text("{}")
    job.progress(1, 1, {"metric": job.config.metric})
    return {"toy": {"metric": job.config.metric}, "adapter_dir": str(job.out_dir)}


TOY = RoundTypeSpec(
    name="toy",
    config=ToyConfig,
    stages=(policy_stage("Toy", lower="nothing"),),
    trainer=f"{__name__}:train_toy",
    trains_on="demonstrations",
)


@pytest.fixture
def toy() -> Any:
    with registry.registered(TOY) as spec:
        yield spec


def test_a_registered_type_runs_through_the_state_machine(
    toy: RoundTypeSpec, app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project = make_ready_project(session, base_model=str(tiny_model_path))
        started = service.start_round(
            session,
            project_id=project.id,
            round_type=toy.name,
            config={"metric": "0.5"},
            enqueue=False,
        )
        session.commit()
        round_id = started.id

    assert run_stage(round_id, toy.stage_names[0]) is None  # its only stage: the round is done

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.done, ended.error
        assert ended.config["metric"] == 0.5
        assert ended.metrics["candidate"]["toy"] == {"metric": 0.5}
        assert ended.metrics["candidate"]["adapter_uri"]
        assert ended.metrics["policy"] == [{"step": 1, "metric": 0.5}]


def test_a_registered_type_validates_with_its_own_config(toy: RoundTypeSpec) -> None:
    assert service.parse_config(toy.name, {})["metric"] == 0.25
    with pytest.raises(InvalidInput) as refused:
        service.parse_config(toy.name, {"metric": 2})
    assert [d["field"] for d in refused.value.details or []] == ["metric"]


def test_a_registered_type_names_its_own_stage_in_a_failure(toy: RoundTypeSpec) -> None:
    failure = describe_failure(MemoryError(), stage="policy", round_type=toy.name)

    assert "training the policy with Toy" in failure.line


def test_unregistering_removes_a_new_type() -> None:
    before = registry.names()
    with registry.registered(TOY):
        assert registry.get("toy") is TOY
    assert registry.find("toy") is None
    assert registry.names() == before == BUILT_IN


def test_unregistering_restores_the_type_it_stood_in_for() -> None:
    stand_in = replace(TOY, name="sft")
    before = registry.names()
    with registry.registered(stand_in):
        assert registry.get("sft") is stand_in
    assert registry.get("sft").config is not ToyConfig
    assert registry.names() == before == BUILT_IN


def test_the_built_in_types_declare_their_stages_in_order() -> None:
    assert {spec.name: spec.stage_names for spec in registry.all_types()} == {
        "reward_ppo": ["reward_model", "policy", "evaluating", "sampling"],
        "reward_rloo": ["reward_model", "policy", "evaluating", "sampling"],
        "reward_grpo": ["reward_model", "policy", "evaluating", "sampling"],
        "sft": ["policy", "evaluating", "sampling"],
        "dpo": ["reward_model", "policy", "evaluating", "sampling"],
    }
    states = {state.value for state in RoundState}
    assert all(stage.name in states for spec in registry.all_types() for stage in spec.stages)


def test_a_type_the_rounds_table_cannot_store_is_refused() -> None:
    too_long = "toy_" * 10 + "x"  # 41 characters: the column holds 40
    with pytest.raises(ValueError, match=f"round type '{too_long}'"):
        registry.register(replace(TOY, name=too_long))
    with pytest.raises(ValueError, match="round type 'Toy round'"):
        registry.register(replace(TOY, name="Toy round"))
    with pytest.raises(ValueError, match="stage 'training'"):
        registry.register(replace(TOY, stages=(replace(TOY.stages[0], name="training"),)))
    assert registry.get("sft").config is not ToyConfig
    assert registry.find("toy") is None
