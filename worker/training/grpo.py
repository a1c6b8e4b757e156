"""GRPO: group-relative policy optimisation on K samples per prompt, no value head.

Shao et al. 2024, DeepSeekMath (https://arxiv.org/abs/2402.03300 §4.1): each response's
advantage is its reward standardised within its group, (r - mean) / std
(`losses.group_advantages`); the loss is PPO's clipped surrogate with that advantage on every
token, each response averaged over its own tokens, plus β·k3 KL to the reference as a loss term.

Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training",
https://arxiv.org/abs/2503.20783) removes two biases: the std division (near-tied groups weigh
as much as informative ones) and the per-response length normalisation (a long wrong answer
is penalised less per token): `dr_grpo=True` centres without scaling and divides every
response's token sum by the same constant, the response budget. The loop it runs is
`critic_free.train_critic_free`, shared with RLOO (training notes §Critic-free rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.critic_free import (
    CriticFreeConfig,
    CriticFreeResult,
    KLIn,
    train_critic_free,
)
from worker.training.losses import group_advantages
from worker.training.outcomes import Progress, ShouldStop
from worker.training.ppo import ScoreFn, SharedBaseReward
from worker.training.prompts import Prompt

if TYPE_CHECKING:
    from worker.distributed.context import DistContext


@dataclass
class GRPOConfig(CriticFreeConfig):
    """GRPO's settings: the shared ones, the KL as a loss term (the paper's), and Dr. GRPO."""

    kl_in: KLIn = "loss"
    """The paper's k3 loss term; "reward" puts PPO's penalty in the reward instead."""
    dr_grpo: bool = False
    """Dr. GRPO: no std division of the advantages, no per-response length normalisation.
    Off by default: GRPO as published (and as TRL's default scales by the group's std)."""


def train_grpo(
    base: str | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    score_fn: ScoreFn | SharedBaseReward,
    config: GRPOConfig,
    *,
    init_adapter_dir: Path | None = None,
    out_dir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> CriticFreeResult:
    """`config.steps` GRPO updates of a LoRA policy on `prompts` against `score_fn` (the
    contract of `ppo.train_ppo`, without the value head)."""
    return train_critic_free(
        base, tokenizer, prompts, score_fn, config,
        algorithm="GRPO",
        # (r - mean) / std, or r - mean under Dr. GRPO
        advantages_fn=partial(group_advantages, scale=not config.dr_grpo),
        # each response over its own tokens, or over the budget under Dr. GRPO
        aggregation="constant" if config.dr_grpo else "sequence",
        init_adapter_dir=init_adapter_dir, out_dir=out_dir,
        progress=progress, should_stop=should_stop, ctx=ctx, fsdp=fsdp,
    )  # fmt: skip
