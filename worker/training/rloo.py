"""RLOO: REINFORCE with a leave-one-out baseline, on K samples per prompt, no value head.

Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
from Human Feedback in LLMs" (https://arxiv.org/abs/2402.14740). Each response's advantage is
its reward minus the mean reward of the other K - 1 responses to the same prompt
(`losses.rloo_advantages`), an unbiased baseline that needs no critic; the update is PPO's
clipped surrogate with that one advantage on every token of the response, averaged over the
batch's real tokens. The K samples are the group annotators rank (training notes §Critic-free
rounds). The loop it runs is `critic_free.train_critic_free`, shared with GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.critic_free import CriticFreeConfig, CriticFreeResult, train_critic_free
from worker.training.losses import rloo_advantages
from worker.training.outcomes import Progress, ShouldStop
from worker.training.ppo import ScoreFn, SharedBaseReward
from worker.training.prompts import Prompt

if TYPE_CHECKING:
    from worker.distributed.context import DistContext


@dataclass
class RLOOConfig(CriticFreeConfig):
    """RLOO's settings: the shared ones (`CriticFreeConfig`); the KL sits in the reward by
    default, as in the paper and PPO."""


def train_rloo(
    base: str | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    score_fn: ScoreFn | SharedBaseReward,
    config: RLOOConfig,
    *,
    init_adapter_dir: Path | None = None,
    out_dir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> CriticFreeResult:
    """`config.steps` RLOO updates of a LoRA policy on `prompts` against `score_fn` (the
    contract of `ppo.train_ppo`, without the value head)."""
    return train_critic_free(
        base, tokenizer, prompts, score_fn, config,
        algorithm="RLOO",
        advantages_fn=rloo_advantages,  # r_i - mean_{j≠i} r_j
        aggregation="token",  # PPO's: every real token of the batch weighs the same
        init_adapter_dir=init_adapter_dir, out_dir=out_dir,
        progress=progress, should_stop=should_stop, ctx=ctx, fsdp=fsdp,
    )  # fmt: skip
