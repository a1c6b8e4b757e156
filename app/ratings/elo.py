"""Online Elo exactly as Chatbot Arena computes it (arXiv 2403.04132; docs/training-notes.md §Elo).

Elo is cheap and updates inside the submit transaction, but it depends on the order of the
votes; the Bradley-Terry fit in `bradley_terry.py` is the order-free rating we report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from app.ratings.pairs import Pair

INITIAL = 1000.0
"""Rating of an item never compared before."""
SCALE = 400.0
"""A SCALE-point gap means BASE:1 odds of winning."""
BASE = 10.0
K_FACTOR = 4.0
"""Step size. Chatbot Arena uses K=4: with many votes per item a small K keeps the rating
from chasing the most recent votes (a K=32 chess-style rating swings ~10x more per vote)."""


def expected_score(r_a: float, r_b: float) -> float:
    """Probability that a beats b under the Elo model, E_a = 1 / (1 + 10^((R_b - R_a)/400))."""
    return 1.0 / (1.0 + BASE ** ((r_b - r_a) / SCALE))


def update(r_a: float, r_b: float, outcome_a: float, k: float = K_FACTOR) -> tuple[float, float]:
    """One vote; outcome_a is 1 (a won), 0.5 (tie) or 0 (b won). Zero-sum, so totals stay put."""
    delta = k * (outcome_a - expected_score(r_a, r_b))
    return r_a + delta, r_b - delta


def elo_ratings(
    pairs: Iterable[Pair], initial: Mapping[int, float] | None = None, k: float = K_FACTOR
) -> dict[int, float]:
    """Replay votes in the given order from `initial` (unseen ids start at INITIAL).

    Passing the stored ratings as `initial` lets a submit update only its own task's samples.
    """
    ratings = dict(initial or {})
    for pair in pairs:
        r_w = ratings.get(pair.winner, INITIAL)
        r_l = ratings.get(pair.loser, INITIAL)
        ratings[pair.winner], ratings[pair.loser] = update(r_w, r_l, 0.5 if pair.tie else 1.0, k)
    return ratings
