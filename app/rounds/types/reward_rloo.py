"""Reward model on all rankings so far, then RLOO against it (K answers per prompt, each
one's baseline the mean of the others, no value head); the gate as reward_ppo's."""

from __future__ import annotations

from typing import Literal

from app.rounds.judge_data import JudgeDataSettings
from app.rounds.judge_reward import JudgeRewardSettings
from app.rounds.round_type import EVALUATING, REWARD_MODEL, SAMPLING, RoundTypeSpec, policy_stage
from app.rounds.schemas import RewardModelSettings, RoundConfigBase
from app.rounds.types.critic_free import CriticFreeSettings, sizer


class RLOOSettings(CriticFreeSettings):
    """RLOO's settings: the shared ones, the KL in the reward (the paper's, and PPO's)."""


class RewardRLOOConfig(RoundConfigBase, JudgeDataSettings, JudgeRewardSettings):
    """Reward model on all rankings so far (or a judge, `reward_judge_id`), then RLOO
    against it."""

    type: Literal["reward_rloo"] = "reward_rloo"
    reward_model: RewardModelSettings = RewardModelSettings()
    rloo: RLOOSettings = RLOOSettings()

    def sampling(self) -> tuple[float | None, int | None]:
        return self.rloo.temperature, self.rloo.max_new_tokens


ROUND_TYPE = RoundTypeSpec(
    name="reward_rloo",
    config=RewardRLOOConfig,
    stages=(
        REWARD_MODEL,
        policy_stage(
            "RLOO",
            lower="rloo.mini_batch_size (or rloo.max_new_tokens, rloo.batch_size, rloo.group_size)",
        ),
        EVALUATING,
        SAMPLING,
    ),
    trainer="worker.jobs.round_trainers:train_rloo_policy",
    trains_on="rankings",
    size=sizer("rloo"),
    trains_against_reward_model=True,
)
