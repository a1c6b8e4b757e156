"""Figures the loop benchmark judges a run by, as pure functions (bench/loop.py --suite).

The labels' ceiling: the best pair accuracy any reward model can reach on noisy rankings is
the true preference's own accuracy on them. Kendall τ: whether the leaderboard orders the
versions as the true preference does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence


def label_ceiling(
    pairs: Iterable[tuple[str, str]], preference: Callable[[str], float]
) -> float | None:
    """Share of (preferred, other) pairs that the preference orders the same way; a tie in
    score counts 0.5 (a scorer can only guess it). None without pairs."""
    total = agreed = 0.0
    for preferred, other in pairs:
        better, worse = preference(preferred), preference(other)
        agreed += 1.0 if better > worse else 0.5 if better == worse else 0.0
        total += 1
    return agreed / total if total else None


def kendall_tau(groups: Iterable[Sequence[tuple[float, float]]]) -> float | None:
    """τ-b of two orderings, (x, y) per item, counting pairs within each group only.

    One group per seed: versions of different runs are never compared. None when no pair is
    ordered by both x and y.
    """
    concordant = discordant = tied_x = tied_y = 0
    for items in groups:
        for i, (x1, y1) in enumerate(items):
            for x2, y2 in items[i + 1 :]:
                dx, dy = x1 - x2, y1 - y2
                if dx == 0 and dy == 0:
                    continue
                if dx == 0:
                    tied_x += 1
                elif dy == 0:
                    tied_y += 1
                elif (dx > 0) == (dy > 0):
                    concordant += 1
                else:
                    discordant += 1
    ordered = concordant + discordant
    denominator = math.sqrt((ordered + tied_y) * (ordered + tied_x))
    return (concordant - discordant) / denominator if ordered else None
