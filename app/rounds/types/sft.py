"""Supervised fine-tuning of the policy adapter on the project's demonstrations.

Its version becomes the project's starting policy (`app.rounds.lineage`), so it trains no
reward model; the gate still scores it with the project's latest reward model, if any.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from app.rounds.round_type import EVALUATING, SAMPLING, RoundTypeSpec, policy_stage
from app.rounds.schemas import RoundConfigBase


class SFTConfig(RoundConfigBase):
    """Fine-tune the policy adapter on demonstrations (loss on response tokens only)."""

    type: Literal["sft"] = "sft"
    epochs: Annotated[int, Field(ge=1, le=100)] = 3
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 3e-4
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    heldout_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.1


ROUND_TYPE = RoundTypeSpec(
    name="sft",
    config=SFTConfig,
    stages=(policy_stage("SFT", lower="batch_size"), EVALUATING, SAMPLING),
    trainer="worker.jobs.round_trainers:train_sft_policy",
    trains_on="demonstrations",
)
