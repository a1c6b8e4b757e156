"""Reward model on all rankings so far, then PPO against it; the gate scores with a second
reward model trained on another held-out split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from app.rounds.judge_data import JudgeDataSettings
from app.rounds.judge_reward import JudgeRewardSettings
from app.rounds.round_type import (
    EVALUATING,
    REWARD_MODEL,
    SAMPLING,
    RoundTypeSpec,
    Sized,
    policy_stage,
)
from app.rounds.schemas import RewardModelSettings, RoundConfigBase, StrictModel

if TYPE_CHECKING:
    from app.models import Project


class PPOSettings(StrictModel):
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


class RewardPPOConfig(RoundConfigBase, JudgeDataSettings, JudgeRewardSettings):
    """Reward model on all rankings so far (or a judge, `reward_judge_id`), then PPO against it."""

    type: Literal["reward_ppo"] = "reward_ppo"
    reward_model: RewardModelSettings = RewardModelSettings()
    ppo: PPOSettings = PPOSettings()

    def sampling(self) -> tuple[float | None, int | None]:
        return self.ppo.temperature, self.ppo.max_new_tokens


PPO_PASSES = 4
"""PPO rollouts per training prompt per round. bench/loop.py --suite (one seed of the length
and keywords+length families, 3 rounds): 4 passes gained +0.61 and +0.76 σ over the base
with KL 3-6 nats; 8 passes gained +0.64 and +0.45 σ with KL 3-10 and twice the policy time.
No difference the noise of one seed resolves, so the cheaper one; the reward model's
accuracy (0.54-0.62 against label ceilings of 0.61-0.67) limits what a round can gain."""
PPO_MIN_EPISODES, PPO_MAX_EPISODES = 256, 2048


def rollout_basis(config: dict[str, Any], *, train_prompts: int, rankings: int) -> int:
    """Prompts the rollouts are sized on: the training prompts, or the rankings while fewer
    (a reward model of few rankings is not worth many rollouts); a judge as the reward
    scores any answer, so then the training prompts."""
    if config.get("reward_judge_id") is not None:
        return train_prompts
    return min(train_prompts, max(rankings, 1))


def size(
    project: Project, config: dict[str, Any], *, prompts: int, rankings: int, n_eval: int
) -> dict[str, Sized]:
    """Rollouts as the project samples (its temperature and length), and the PPO steps from
    how many prompts and rankings it has."""
    sized: dict[str, Sized] = {}
    ppo = config["ppo"]
    if ppo.get("temperature") is None:
        sized["ppo.temperature"] = Sized(project.temperature, "the project's sampling temperature")
    if ppo.get("max_new_tokens") is None:
        sized["ppo.max_new_tokens"] = Sized(
            project.max_new_tokens,
            "the project's sample length, so rollouts are as long as what annotators rank",
        )
    if ppo.get("steps") is None:
        train_prompts = max(1, prompts - n_eval)
        basis = rollout_basis(config, train_prompts=train_prompts, rankings=rankings)
        episodes = min(PPO_MAX_EPISODES, max(PPO_MIN_EPISODES, PPO_PASSES * basis))
        steps = max(1, round(episodes / ppo["batch_size"]))
        sized["ppo.steps"] = Sized(
            steps,
            f"{PPO_PASSES} rollouts per training prompt ({train_prompts}), or per ranking "
            f"while rankings ({rankings}) are fewer, within {PPO_MIN_EPISODES}-"
            f"{PPO_MAX_EPISODES} episodes: {steps} steps × {ppo['batch_size']}",
        )
    return sized


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
    size=size,
    trains_against_reward_model=True,
)
