"""Reward model on all rankings so far, then GRPO against it (K answers per prompt, each
one's advantage its reward standardised in its group, no value head); the gate as
reward_ppo's."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from app.rounds.judge_data import JudgeDataSettings
from app.rounds.judge_reward import JudgeRewardSettings
from app.rounds.round_type import EVALUATING, REWARD_MODEL, SAMPLING, RoundTypeSpec, policy_stage
from app.rounds.schemas import RewardModelSettings, RoundConfigBase
from app.rounds.types.critic_free import CriticFreeSettings, sizer


class GRPOSettings(CriticFreeSettings):
    """GRPO's settings: the shared ones, the KL as a loss term (the paper's), Dr. GRPO."""

    kl_in: Annotated[
        Literal["reward", "loss"],
        Field(
            description="'loss': a k3 KL term is added to the loss (as GRPO); 'reward': the "
            "KL to the reference is subtracted from each answer's reward (as PPO)."
        ),
    ] = "loss"
    # Off: GRPO as published (and TRL's default, which scales by the group's std); the fix is
    # an option until a benchmark across the loop suite's cases says otherwise.
    dr_grpo: Annotated[
        bool,
        Field(
            description="Dr. GRPO: do not divide advantages by the group's std, nor each "
            "answer's loss by its own length (removes GRPO's difficulty and length biases)."
        ),
    ] = False


class RewardGRPOConfig(RoundConfigBase, JudgeDataSettings, JudgeRewardSettings):
    """Reward model on all rankings so far (or a judge, `reward_judge_id`), then GRPO
    against it."""

    type: Literal["reward_grpo"] = "reward_grpo"
    reward_model: RewardModelSettings = RewardModelSettings()
    grpo: GRPOSettings = GRPOSettings()

    def sampling(self) -> tuple[float | None, int | None]:
        return self.grpo.temperature, self.grpo.max_new_tokens


ROUND_TYPE = RoundTypeSpec(
    name="reward_grpo",
    config=RewardGRPOConfig,
    stages=(
        REWARD_MODEL,
        policy_stage(
            "GRPO",
            lower="grpo.mini_batch_size (or grpo.max_new_tokens, grpo.batch_size, grpo.group_size)",
        ),
        EVALUATING,
        SAMPLING,
    ),
    trainer="worker.jobs.round_trainers:train_grpo_policy",
    trains_on="rankings",
    size=sizer("grpo"),
    trains_against_reward_model=True,
)
