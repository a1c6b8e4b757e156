"""Active selection: which of a job's prompts are drawn uniformly, which samples make a task
where a ranking is worth most, and why each task was made (`RankingTask.selection_reason`).

Pure functions, no model and no database: the worker scores candidate samples with the
reward model's bootstrap ensemble (worker/training/reward_ensemble.py) and calls these.

- A share `uniform_share` of a job's prompts is drawn exactly as under `selection="uniform"`
  (reason "uniform"): ⌈share · n⌉ of its n prompts, picked by the job's seed. Rounding up
  keeps the uniform tasks, the ones the leaderboard is computed on (`uniform_task_filter`),
  never below the share; the excess is under one task per job.
- Every other prompt of the job gets POOL_FACTOR times the newest version's samples a task
  needs, and the task keeps the subset the ensemble disagrees on most: the mean, over the
  task's pairs, of the standard deviation across heads of P(a ≻ b) (reason "uncertainty").
- Which prompts: once a reward model exists, the job also holds as many extra candidate
  prompts as it has actively chosen ones (`candidate_count`, the next prompts with the fewest
  tasks); every candidate gets its pool, and the prompts whose best task the ensemble
  disagrees on most keep their tasks (`choose_prompts`). Sampling for the active share thus
  doubles (2 × the prompts, each at POOL_FACTOR × K): a job draws at most about twice what it
  did with sample-level selection alone; the uniform share is drawn as before.
- While the current version's leaderboard verdict against its previous version is "not
  distinguishable yet", those tasks (which mix the two versions) keep the subset whose
  cross-version pairs the ensemble disagrees on most (reason "undecided").
- Without an ensemble (no reward model yet, or one trained before ensembles existed), the
  Bradley-Terry fit's interval is the only uncertainty there is: an undecided version pair
  still gives "undecided" tasks (the first distinct samples, as a uniform task takes them);
  otherwise the task is an ordinary uniform one.

Why these choices, with references: docs/training-notes.md §Active selection.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, exists

from app.models import Comparison, RankingTask

UNIFORM, UNCERTAINTY, UNDECIDED = "uniform", "uncertainty", "undecided"
REASONS = (UNCERTAINTY, UNDECIDED, UNIFORM)
"""Every `selection_reason`, in the order the project page lists them."""
POOL_FACTOR = 2
"""Candidates per actively chosen task: this many times the newest version's samples it
shows (2K samples per prompt for a task of K new samples); the unused ones stay stored and
later tasks of the prompt may show them."""
MAX_SUBSETS = 5000
"""Up to this many candidate subsets are all scored; beyond it samples are added greedily."""


def uniform_count(n: int, share: float) -> int:
    """How many of a job's `n` prompts are drawn uniformly: ⌈share · n⌉ (never below the share)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"uniform share must be in [0, 1], got {share}")
    return min(n, math.ceil(share * n - 1e-9))


def split_uniform(prompt_ids: Sequence[int], share: float, seed: int) -> set[int]:
    """The prompts drawn uniformly, `uniform_count` of them, chosen by `seed` alone (the same
    seed and prompts give the same split, whatever their order)."""
    ordered = sorted(set(prompt_ids))
    return set(random.Random(seed).sample(ordered, uniform_count(len(ordered), share)))


def candidate_count(n: int, share: float) -> int:
    """Extra candidate prompts an active job of `n` prompts holds: one per actively chosen
    prompt (a pool of 2×), so the job's sampling stays within about twice sample-level
    selection's."""
    return n - uniform_count(n, share)


def choose_prompts(choices: Sequence[TaskChoice], n: int) -> list[TaskChoice]:
    """The `n` tasks (one per candidate prompt) the ensemble disagrees on most, in pool order.
    Ties, and choices without an ensemble (disagreement None), keep the pool's order: the
    job's own prompts come before its extra candidates, as without prompt-level selection."""

    def rank(i: int) -> tuple[float, int]:
        value = choices[i].disagreement
        return (0.0 if value is None else -value, i)

    order = sorted(range(len(choices)), key=rank)
    kept = set(order[:n])
    return [choice for i, choice in enumerate(choices) if i in kept]


def pair_disagreement(scores: np.ndarray) -> np.ndarray:
    """(N, N) standard deviation across heads of P(a ≻ b) = σ(r_a − r_b); scores: (E, N)."""
    diff = scores[:, :, None] - scores[:, None, :]  # (E, N, N)
    prob = 0.5 * (1.0 + np.tanh(diff / 2.0))  # (E, N, N) σ(diff), without overflow
    return np.asarray(prob.std(axis=0))  # (N, N)


def task_disagreement(
    disagreement: np.ndarray, members: Sequence[int], *, anchors: Collection[int] = ()
) -> float:
    """Mean disagreement over the pairs of `members` (indices into `disagreement`); with
    `anchors`, over the pairs of an anchor and a non-anchor only (cross-version pairs)."""
    pairs = [
        (a, b)
        for a, b in itertools.combinations(members, 2)
        if not anchors or ((a in anchors) != (b in anchors))
    ]
    if not pairs:
        return 0.0
    return float(np.mean([disagreement[a, b] for a, b in pairs]))


def most_uncertain(
    scores: np.ndarray, *, anchors: Sequence[int], candidates: Sequence[int], n: int, cross: bool
) -> tuple[list[int], float]:
    """The `n` candidates (indices into scores' columns, in candidate order) that, shown with
    `anchors`, make the task the ensemble disagrees on most, and that disagreement. `cross`:
    count only anchor–candidate pairs (deciding two versions). Ties keep earlier candidates."""
    if n > len(candidates):
        raise ValueError(f"{n} samples asked of {len(candidates)} candidates")
    matrix = pair_disagreement(scores)
    fixed = set(anchors) if cross and anchors else set()

    def value(chosen: Sequence[int]) -> float:
        return task_disagreement(matrix, [*anchors, *chosen], anchors=fixed)

    if math.comb(len(candidates), n) <= MAX_SUBSETS:
        best: tuple[int, ...] = tuple(candidates[:n])
        best_value = value(best)
        for subset in itertools.combinations(candidates, n):  # lexicographic: ties keep earlier
            v = value(subset)
            if v > best_value + 1e-12:
                best, best_value = subset, v
        return list(best), best_value
    chosen: list[int] = []
    for _ in range(n):
        rest = [c for c in candidates if c not in chosen]
        pick = max(rest, key=lambda c: (value([*chosen, c]), -candidates.index(c)))
        chosen.append(pick)
    return [c for c in candidates if c in chosen], value(chosen)


@dataclass(frozen=True)
class TaskChoice:
    """A task to make: the prompt, the samples it shows and why they were chosen."""

    prompt_id: int
    sample_ids: tuple[int, ...]
    reason: str
    disagreement: float | None = None
    """The ensemble's disagreement on the task (None without an ensemble)."""


def choose_task(
    prompt_id: int,
    *,
    anchors: Sequence[int],
    candidates: Sequence[int],
    n_new: int,
    n_prev: int,
    scores: dict[int, np.ndarray] | None,
    undecided: bool,
) -> TaskChoice | None:
    """The task of an actively chosen prompt: `anchors` (the previous version's samples it
    shows), `candidates` (the newest version's, in draw order) and, per sample id, the
    ensemble's (E,) scores, or None without an ensemble. None when the prompt lacks the
    distinct texts a task needs (as under uniform selection, it gets no task)."""
    if len(anchors) < n_prev or len(candidates) < n_new:
        return None
    anchors = list(anchors[:n_prev])
    if scores is None:
        reason = UNDECIDED if undecided and n_prev else UNIFORM
        return TaskChoice(prompt_id, (*candidates[:n_new], *anchors), reason)
    ids = [*anchors, *candidates]
    matrix = np.stack([scores[i] for i in ids], axis=1)  # (E, N)
    picked, value = most_uncertain(
        matrix,
        anchors=list(range(len(anchors))),
        candidates=list(range(len(anchors), len(ids))),
        n=n_new,
        cross=undecided and bool(n_prev),
    )
    reason = UNDECIDED if undecided and n_prev else UNCERTAINTY
    return TaskChoice(prompt_id, (*(ids[i] for i in picked), *anchors), reason, value)


def uniform_task_filter() -> ColumnElement[bool]:
    """Comparisons from uniformly drawn tasks: once a project has actively chosen tasks, the
    leaderboard is computed on these by default, so actively chosen prompts and samples (where
    the model is unsure, by design) do not bias version ratings."""
    return exists().where(
        RankingTask.id == Comparison.task_id, RankingTask.selection_reason == UNIFORM
    )
