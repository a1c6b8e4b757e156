"""Reward model on all rankings so far, then PPO against it; the gate scores with a second
reward model trained on another held-out split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.rounds.registry import EVALUATING, REWARD_MODEL, SAMPLING, RoundTypeSpec, policy_stage
from app.rounds.schemas import RewardModelSettings, RoundConfigBase


class PPOSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: Annotated[
        int | None,
        Field(
            ge=1,
            le=100000,
            description="PPO updates (blank: about four rollouts per training prompt, fewer "
            "while rankings are fewer than prompts).",
        ),
    ] = None
    batch_size: Annotated[int, Field(ge=2, le=4096, description="Prompts per rollout.")] = 16
    mini_batch_size: Annotated[int, Field(ge=1, le=4096)] = 8
    ppo_epochs: Annotated[int, Field(ge=1, le=16)] = 4
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 3e-4
    kl_coef: Annotated[float, Field(ge=0, le=10)] = 0.05
    adaptive_kl: bool = False
    # The same ranges as the project's sampling settings: a blank is sized from them.
    temperature: Annotated[
        float | None,
        Field(ge=0.01, le=5, description="Rollout temperature (blank: the project's)."),
    ] = None
    max_new_tokens: Annotated[
        int | None,
        Field(ge=1, le=8192, description="Rollout length in tokens (blank: the project's)."),
    ] = None

    @model_validator(mode="after")
    def _mini_batches_divide_the_batch(self) -> PPOSettings:
        # Checked here, not after the reward model has trained for an hour.
        if self.batch_size % self.mini_batch_size:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must divide batch_size "
                f"({self.batch_size})"
            )
        return self


class RewardPPOConfig(RoundConfigBase):
    """Reward model on all rankings so far, then PPO against it."""

    type: Literal["reward_ppo"] = "reward_ppo"
    reward_model: RewardModelSettings = RewardModelSettings()
    ppo: PPOSettings = PPOSettings()

    def sampling(self) -> tuple[float | None, int | None]:
        return self.ppo.temperature, self.ppo.max_new_tokens


ROUND_TYPE = RoundTypeSpec(
    name="reward_ppo",
    config=RewardPPOConfig,
    stages=(
        REWARD_MODEL,
        policy_stage("PPO", lower="ppo.mini_batch_size and ppo.batch_size (or ppo.max_new_tokens)"),
        EVALUATING,
        SAMPLING,
    ),
    trainer="worker.jobs.round_trainers:train_ppo_policy",
    trains_on="rankings",
    trains_against_reward_model=True,
)
