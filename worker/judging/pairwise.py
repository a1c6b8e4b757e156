"""Pairwise judging: every pair asked in both orders, the outcomes aggregated with Bradley-Terry.

Asking (a, b) and (b, a) cancels the judge's taste for a position: a pair counts as a win only
when both orders agree, and any disagreement (or a TIE) counts as a tie, half a win each way.
Samples whose fitted strengths are equal share a group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations

Outcome = float
"""Score of the first sample against the second: 1 win, 0.5 tie, 0 loss."""

PRIOR = 0.1
"""Pseudo-ties added to every pair: keeps the fit finite when one sample wins everything."""
TIE_TOLERANCE = 1e-6
"""Log-strengths closer than this are one group (equal win records fit to equal strengths)."""


def pair_outcome(forward: str, backward: str) -> Outcome:
    """Combine 'A'/'B'/'TIE' for (a, b) shown as (A, B) and then as (B, A)."""
    if forward == "A" and backward == "B":
        return 1.0
    if forward == "B" and backward == "A":
        return 0.0
    return 0.5  # ties and position-driven answers (A then A) say nothing about a vs b


def bradley_terry(
    k: int, outcomes: dict[tuple[int, int], Outcome], iters: int = 500
) -> list[float]:
    """Log-strengths of k items from pair outcomes (i < j): the MM algorithm (Hunter 2004).

    wins[i] = Σ_j score(i, j) + prior; p_i ← wins[i] / Σ_j n_ij / (p_i + p_j), n_ij = 1 + 2·prior.
    """
    wins = [0.0] * k
    n = 1.0 + 2 * PRIOR
    for (i, j), score in outcomes.items():
        wins[i] += score + PRIOR
        wins[j] += 1.0 - score + PRIOR
    p = [1.0] * k
    for _ in range(iters):
        new = [
            wins[i] / sum(n / (p[i] + p[j]) for j in range(k) if j != i and _met(i, j, outcomes))
            if any(_met(i, j, outcomes) for j in range(k) if j != i)
            else 1.0
            for i in range(k)
        ]
        norm = math.exp(sum(math.log(x) for x in new) / k)  # geometric mean 1
        new = [x / norm for x in new]
        done = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, p, strict=True)) < 1e-12
        p = new
        if done:
            break
    return [math.log(x) for x in p]


def _met(i: int, j: int, outcomes: dict[tuple[int, int], Outcome]) -> bool:
    return (min(i, j), max(i, j)) in outcomes


def groups_from_strengths(ids: list[int], strengths: list[float]) -> list[list[int]]:
    """Ids best first; equal strengths (within TIE_TOLERANCE) share a group."""
    order = sorted(range(len(ids)), key=lambda i: -strengths[i])
    groups: list[list[int]] = []
    last: float | None = None
    for i in order:
        if groups and last is not None and last - strengths[i] <= TIE_TOLERANCE:
            groups[-1].append(ids[i])
        else:
            groups.append([ids[i]])
            last = strengths[i]
    return groups


def rank_pairwise(ids: list[int], ask: Callable[[int, int], str]) -> list[list[int]]:
    """Groups of ids from `ask(i, j)` -> 'A' | 'B' | 'TIE' (sample i shown as A, j as B).

    Calls ask k·(k-1) times: each unordered pair in both orders.
    """
    k = len(ids)
    outcomes: dict[tuple[int, int], Outcome] = {}
    for i, j in combinations(range(k), 2):
        outcomes[(i, j)] = pair_outcome(ask(i, j), ask(j, i))
    return groups_from_strengths(ids, bradley_terry(k, outcomes))
