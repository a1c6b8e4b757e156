"""The TRL-style pairwise baseline of bench/reward_model.py: every cross-group pair of a
ranking is its own example, scored as two full sequences (TRL's RewardTrainer).

It is the product's trainer (`worker.training.reward_model.train_reward_model`) with a pair as
the training unit: same model, loss, optimizer, held-out evaluation on whole rankings and
normalisation, so that the benchmark compares the unit alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from worker.training.reward_model import (
    META_FILE,
    EncodedRanking,
    RankingExample,
    RewardModelConfig,
    RewardModelResult,
    train_reward_model,
)


def pair_indices(groups: Sequence[int]) -> list[tuple[int, int]]:
    """(winner, loser) indices of every cross-group pair; pairs inside a tie group are not used."""
    return [(i, j) for i, gi in enumerate(groups) for j, gj in enumerate(groups) if gi < gj]


def as_pairs(examples: Sequence[RankingExample]) -> list[RankingExample]:
    """Every cross-group pair of every ranking as its own 2-response example (winner first),
    weighing what its ranking weighs."""
    return [
        RankingExample(e.prompt, [e.responses[i], e.responses[j]], [0, 1], e.weight)
        for e in examples
        for i, j in pair_indices(e.groups)
    ]


def encoded_pairs(rankings: Sequence[EncodedRanking]) -> list[EncodedRanking]:
    """`as_pairs` on tokenised rankings: each pair re-uses its ranking's token rows and weight."""
    return [
        EncodedRanking([r.rows[i], r.rows[j]], [0, 1], r.weight)
        for r in rankings
        for i, j in pair_indices(r.groups)
    ]


def train_pairwise(
    base_name_or_path: str,
    examples: Sequence[RankingExample],
    config: RewardModelConfig,
    *,
    out_dir: Path,
    pairs_per_step: int | None = None,
) -> RewardModelResult:
    """Baseline: every cross-group pair is its own example (TRL's RewardTrainer).

    Costs 2 forward passes per pair, 2·C(K,2) per ranking. `pairs_per_step` defaults to
    as many sequences per step as the K-way trainer uses (batch_size · mean K / 2 pairs).
    Held-out metrics are computed on whole rankings, exactly as for the K-way trainer.
    """
    if pairs_per_step is None:
        mean_k = sum(len(e.responses) for e in examples) / max(len(examples), 1)
        pairs_per_step = max(1, round(config.batch_size * mean_k / 2))
    result = train_reward_model(
        base_name_or_path,
        examples,
        # TRL scores chosen and rejected as two full sequences: no shared prompt.
        dataclasses.replace(config, batch_size=pairs_per_step, share_prompt=False),
        out_dir=out_dir,
        training_units=encoded_pairs,
    )
    meta_path = Path(out_dir) / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "method": "pairwise"}, indent=2))
    return result
