"""A bootstrap ensemble of reward heads on the trained reward model's frozen features: how
unsure the reward model is about a pair, for active selection (app/sampling/selection.py).

After the reward model trains, each of its training samples is scored once more to read its
features (the final hidden state at the last token, what the reward head reads). E linear
heads are then fitted on those cached features, each on a bootstrap resample of the training
rankings (whole rankings: their pairs share samples), with the Bradley-Terry loss
−log σ(w·(f_w − f_l)) and an L2 penalty, by L-BFGS: seconds, no backward pass through the
model. Where the heads disagree about P(a ≻ b), the data did not pin the ordering down, and a
human ranking is worth most (docs/training-notes.md §Active selection).

Features are standardised (the training samples' mean and standard deviation, stored with the
heads), so one L2 strength suits every base model's hidden size and scale.

File written next to the reward model's (`save_ensemble`):
    ensemble.safetensors   weight (E, H), feature_mean (H,), feature_scale (H,)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from worker.training.prompts import Prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from worker.training.reward_model import (
        RankingExample,
        RewardModel,
        RewardModelConfig,
        RewardModelResult,
    )

logger = logging.getLogger(__name__)

ENSEMBLE_FILE = "ensemble.safetensors"


@dataclass
class EnsembleConfig:
    """How the bootstrap heads are fitted."""

    n_heads: int = 5
    """Heads E; their spread across resamples is the uncertainty."""
    l2: float = 1e-2
    """L2 penalty on each head's weights (standardised features); keeps separable data finite."""
    max_iter: int = 200
    """L-BFGS iterations per head."""
    seed: int = 0
    """Seeds the bootstrap resamples."""
    batch_size: int = 16
    """Sequences per forward pass when reading features."""
    max_length: int = 512
    """Tokens of prompt + response, as the reward model was trained with."""

    def __post_init__(self) -> None:
        if self.n_heads < 2:
            raise ValueError(f"n_heads must be >= 2 (a spread needs two), got {self.n_heads}")
        if self.l2 < 0 or self.max_iter < 1 or self.batch_size < 1 or self.max_length < 1:
            raise ValueError("l2 must be >= 0; max_iter, batch_size, max_length >= 1")


@dataclass
class RewardEnsemble:
    """E linear heads on standardised features."""

    weight: Tensor  # (E, H)
    feature_mean: Tensor  # (H,)
    feature_scale: Tensor  # (H,)

    @property
    def n_heads(self) -> int:
        return int(self.weight.shape[0])

    def scores(self, features: Tensor) -> Tensor:
        """(E, N) raw scores of features (N, H)."""
        z = (features.float().cpu() - self.feature_mean) / self.feature_scale  # (N, H)
        return self.weight @ z.T  # (E, N)

    def save(self, out_dir: Path) -> Path:
        path = Path(out_dir) / ENSEMBLE_FILE
        save_file(
            {
                "weight": self.weight.contiguous(),
                "feature_mean": self.feature_mean.contiguous(),
                "feature_scale": self.feature_scale.contiguous(),
            },
            path,
        )
        return path


def load_ensemble(rm_dir: Path) -> RewardEnsemble | None:
    """The ensemble stored with a reward model, or None (trained before ensembles existed)."""
    path = Path(rm_dir) / ENSEMBLE_FILE
    if not path.exists():
        return None
    tensors = load_file(path)
    return RewardEnsemble(tensors["weight"], tensors["feature_mean"], tensors["feature_scale"])


# Features --------------------------------------------------------------------------------


@torch.no_grad()
def features(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 512,
) -> Tensor:
    """(N, H) what the reward head reads for each (prompt, response): its input, caught by a
    forward hook, so the features are exactly those `score` uses."""
    from worker.training.reward_model import encode_pair

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    rows = [
        encode_pair(tokenizer, p, r, max_length=max_length)
        for p, r in zip(prompts, responses, strict=True)
    ]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # little padding per batch
    caught: list[Tensor] = []
    hook = rm.head.register_forward_hook(
        lambda _module, inputs, _output: caught.append(inputs[0].detach().float().cpu())
    )
    out = torch.zeros((len(rows), rm.head.in_features))  # (N, H)
    try:
        with rm.scoring():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                input_ids, attention_mask = _right_padded(
                    [rows[i] for i in idx], tokenizer.pad_token_id, rm.device
                )
                caught.clear()
                rm(input_ids, attention_mask)
                out[idx] = caught[-1]  # (B, H)
    finally:
        hook.remove()
    return out


def _right_padded(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids.to(device), attention_mask.to(device)


# Fitting ---------------------------------------------------------------------------------


def ranking_pairs(groups: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """(winner, loser, ranking) index tensors (P,) of every cross-group pair; samples are
    numbered ranking by ranking (the rows of `features` over `_samples`)."""
    winners, losers, owners = [], [], []
    offset = 0
    for r, g in enumerate(groups):
        for i, gi in enumerate(g):
            for j, gj in enumerate(g):
                if gi < gj:  # 0 = best
                    winners.append(offset + i)
                    losers.append(offset + j)
                    owners.append(r)
        offset += len(g)
    return torch.tensor(winners), torch.tensor(losers), torch.tensor(owners)


def fit_heads(
    feats: Tensor,
    groups: Sequence[Sequence[int]],
    config: EnsembleConfig,
    weights: Sequence[float] | None = None,
) -> RewardEnsemble:
    """E heads, head e on bootstrap resample e of the rankings (`groups[r]`: tie groups of
    ranking r's samples, rows of `feats` (N, H) in ranking order). `weights[r]` is ranking r's
    reliability weight, as the reward model's loss takes it (None: all 1)."""
    winners, losers, owners = ranking_pairs(groups)
    if len(winners) == 0:
        raise ValueError("no ranking has two different groups: nothing to fit")
    feats = feats.double()
    mean = feats.mean(0)  # (H,)
    scale = feats.std(0).clamp(min=1e-6) if len(feats) > 1 else torch.ones_like(mean)
    z = (feats - mean) / scale  # (N, H)
    diff = z[winners] - z[losers]  # (P, H): winner minus loser
    reliability = torch.ones(len(groups), dtype=torch.float64)  # (R,)
    if weights is not None:
        reliability = torch.tensor(list(weights), dtype=torch.float64)
    generator = torch.Generator().manual_seed(config.seed)
    heads = []
    for _ in range(config.n_heads):
        # Bootstrap: rankings drawn with replacement; a pair weighs its ranking's draw count.
        draws = torch.randint(len(groups), (len(groups),), generator=generator)
        counts = torch.bincount(draws, minlength=len(groups)).double()  # (R,)
        weight = (counts * reliability)[owners]  # (P,)
        heads.append(_fit_one(diff, weight, config))
    return RewardEnsemble(torch.stack(heads).float(), mean.float(), scale.float())


def _fit_one(diff: Tensor, weight: Tensor, config: EnsembleConfig) -> Tensor:
    """argmin_w Σ_p weight_p · softplus(−w·diff_p) / Σ weight + l2/2 · ‖w‖² (convex)."""
    w = torch.zeros(diff.shape[1], dtype=diff.dtype, requires_grad=True)  # (H,)
    total = weight.sum().clamp(min=1e-9)
    optimizer = torch.optim.LBFGS(
        [w], max_iter=config.max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        margin = diff @ w  # (P,)
        loss = (weight * torch.nn.functional.softplus(-margin)).sum() / total
        loss = loss + 0.5 * config.l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def fit_reward_ensemble(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[RankingExample],
    config: EnsembleConfig,
) -> RewardEnsemble:
    """Read the features of the rankings' samples once, then fit the heads on them."""
    usable = [e for e in examples if e.n_pairs > 0]
    prompts = [e.prompt for e in usable for _ in e.responses]
    responses = [r for e in usable for r in e.responses]
    feats = features(
        rm,
        tokenizer,
        prompts,
        responses,
        batch_size=config.batch_size,
        max_length=config.max_length,
    )
    return fit_heads(feats, [e.groups for e in usable], config, [e.weight for e in usable])


def save_ensemble(
    result: RewardModelResult,
    examples: Sequence[RankingExample],
    out_dir: Path,
    *,
    config: RewardModelConfig,
) -> RewardEnsemble | None:
    """Fit and store the ensemble of a finished reward-model run (`result`, trained with the
    RewardModelConfig `config` on `examples`) next to its files, on the same training split.
    A failure is logged, not raised: the reward model stands without it, and active selection
    falls back to the leaderboard's intervals (app/sampling/selection.py)."""
    from worker.training.loop import split_by_prompt

    try:
        train, _ = split_by_prompt(
            examples, heldout_fraction=config.heldout_fraction, seed=config.seed
        )
        ensemble = fit_reward_ensemble(
            result.model,
            result.tokenizer,
            train,
            EnsembleConfig(seed=config.seed, max_length=config.max_length),
        )
        ensemble.save(out_dir)
        return ensemble
    except Exception:
        logger.exception("the reward model's uncertainty ensemble could not be fitted")
        return None


def ensemble_scores(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    ensemble: RewardEnsemble,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 512,
) -> np.ndarray:
    """(E, N) each head's raw score of each (prompt, response)."""
    if not responses:
        return np.zeros((ensemble.n_heads, 0))
    feats = features(
        rm, tokenizer, prompts, responses, batch_size=batch_size, max_length=max_length
    )
    return ensemble.scores(feats).numpy()
