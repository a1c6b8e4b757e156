"""Leaderboard math on top of the Bradley-Terry fit: intervals that respect rankings, the
previous version of each version, head-to-head win rates and the verdict. Pure numpy.

Why a ranking bootstrap: one ranking of K samples yields up to C(K, 2) comparisons that share
an annotator, a prompt and a moment, so they are not independent votes. Resampling comparison
rows (Arena's scheme, right for one vote per battle) would treat a single enthusiastic ranking
as six independent votes and make the intervals too narrow; here each bootstrap round draws
whole rankings with replacement instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.ratings.bradley_terry import (
    UNDECIDED,
    BTResult,
    aggregate,
    difference_interval,
    fit,
    to_ratings,
    verdict,
)
from app.ratings.elo import elo_ratings
from app.ratings.pairs import Pair

BOOTSTRAP_ROUNDS = 100
MIN_RANKINGS_FOR_VERDICT = 10
"""A version needs this many rankings that compared it with another version before it gets a
verdict: with two unanimous rankings every bootstrap round agrees, yet a sign test on two
votes means nothing (p = 0.25). Ten unanimous rankings give p ≈ 0.002."""


def fit_by_ranking(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    rankings: np.ndarray,
    *,
    bootstrap: int = BOOTSTRAP_ROUNDS,
    prior: float = 1.0,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> BTResult:
    """Bradley-Terry point fit plus 95% intervals from a bootstrap over rankings.

    `rankings` gives each comparison's ranking id. Each round draws as many rankings as there
    are, with replacement, weights every comparison by its ranking's draw count, and refits
    from the point estimate (the pair totals are rebuilt with one bincount, O(comparisons)).
    `weights` (one per comparison: its annotator's reliability weight) are scaled to mean 1,
    so they only say what counts more than what, and equal weights give the unweighted fit.
    """
    winners = np.asarray(winners, dtype=np.int64)
    losers = np.asarray(losers, dtype=np.int64)
    ties = np.asarray(ties, dtype=bool)
    rankings = np.asarray(rankings, dtype=np.int64)
    weights = _mean_one(weights, len(winners))
    agg = aggregate(winners, losers, ties, weights)
    beta = fit(agg, prior)
    samples = None
    if bootstrap > 0 and agg.n_items > 0:
        keep = winners != losers  # aggregate drops self-comparisons; so do we
        w, lo, t = winners[keep], losers[keep], ties[keep]
        k = agg.n_items
        iw, il = np.searchsorted(agg.ids, w), np.searchsorted(agg.ids, lo)
        a, b = np.minimum(iw, il), np.maximum(iw, il)
        pair = np.searchsorted(agg.pair_a * k + agg.pair_b, a * k + b)  # (n,) pair index
        score_a = np.where(t, 0.5, np.where(iw == a, 1.0, 0.0))  # (n,)
        _, cluster = np.unique(rankings[keep], return_inverse=True)
        n_clusters, n_pairs = int(cluster.max()) + 1, len(agg.pair_a)
        rng = np.random.default_rng(seed)
        samples = np.empty((bootstrap, k))
        for r in range(bootstrap):
            draws = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters))
            weight = draws[cluster] if weights is None else draws[cluster] * weights[keep]
            resampled = dataclasses.replace(
                agg,
                pair_wins_a=np.bincount(pair, weight * score_a, n_pairs),
                pair_wins_b=np.bincount(pair, weight * (1.0 - score_a), n_pairs),
            )
            samples[r] = to_ratings(fit(resampled, prior, start=beta, tol=1e-6))
    return BTResult.of(agg, beta, samples)


def _mean_one(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """Weights scaled to mean 1 (None stays None: unweighted)."""
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if len(weights) != n:
        raise ValueError("weights must have one entry per comparison")
    total = float(weights.sum()) if n else 0.0
    return weights * (n / total) if total > 0 else weights


@dataclass(frozen=True)
class VersionInfo:
    """What the leaderboard needs to know about a version besides its comparisons."""

    id: int
    number: int
    parent_id: int | None


def previous_versions(versions: Sequence[VersionInfo], rated: set[int]) -> dict[int, int]:
    """{version: the version it is judged against}, for rated versions only.

    Its parent when the parent has comparisons (a trained version against what it was trained
    from), else the nearest lower-numbered rated version (base, external uploads). The first
    rated version has none.
    """
    by_number = sorted((v for v in versions if v.id in rated), key=lambda v: v.number)
    out: dict[int, int] = {}
    for i, version in enumerate(by_number):
        if version.parent_id is not None and version.parent_id in rated:
            out[version.id] = version.parent_id
        elif i > 0:
            out[version.id] = by_number[i - 1].id
    return out


def head_to_head(
    win_versions: np.ndarray, lose_versions: np.ndarray, ties: np.ndarray, new: int, old: int
) -> tuple[float | None, int]:
    """(win rate of `new` against `old` with ties as half a win, direct comparisons);
    None when the two were never compared directly."""
    new_won = (win_versions == new) & (lose_versions == old)
    old_won = (win_versions == old) & (lose_versions == new)
    n = int(np.sum(new_won | old_won))
    if n == 0:
        return None, 0
    score = np.sum(new_won & ~ties) + 0.5 * np.sum((new_won | old_won) & ties)
    return float(score / n), n


def rankings_per_item(
    winners: np.ndarray, losers: np.ndarray, rankings: np.ndarray
) -> dict[int, int]:
    """{item: distinct rankings in which it met a different item}."""
    keep = winners != losers
    items = np.concatenate([winners[keep], losers[keep]])
    clusters = np.concatenate([rankings[keep], rankings[keep]])
    if not len(items):
        return {}
    unique = np.unique(np.stack([items, clusters]), axis=1)
    ids, counts = np.unique(unique[0], return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


@dataclass(frozen=True)
class VersionRating:
    version_id: int
    rating: float
    ci_low: float | None
    ci_high: float | None
    comparisons: int
    elo: float
    previous_id: int | None
    win_rate_vs_previous: float | None
    verdict: str | None
    """None for the first version (nothing to compare with)."""


def rate_versions(
    versions: Sequence[VersionInfo],
    win_versions: np.ndarray,
    lose_versions: np.ndarray,
    ties: np.ndarray,
    rankings: np.ndarray,
    *,
    bootstrap: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    weights: np.ndarray | None = None,
    fit: Callable[..., BTResult] = fit_by_ranking,
) -> list[VersionRating]:
    """One row per version that met another version; comparisons in id order (for Elo).

    The verdict compares each version with its previous one through the bootstrap interval of
    the rating difference (same rounds for both, so their correlation is kept). `weights`
    (per comparison) weight the Bradley-Terry fit only: Elo, the head-to-head win rate and the
    rankings a verdict needs count comparisons as they are. `fit` is fit_by_ranking or one with
    its signature (the position-corrected fit).
    """
    result = fit(
        win_versions, lose_versions, ties, rankings, bootstrap=bootstrap, seed=seed, weights=weights
    )
    rated = set(result.ids.tolist())
    previous = previous_versions(versions, rated)
    per_version_rankings = rankings_per_item(win_versions, lose_versions, rankings)
    cross = win_versions != lose_versions
    elo = elo_ratings(
        Pair(int(w), int(lo), bool(t))
        for w, lo, t in zip(win_versions[cross], lose_versions[cross], ties[cross], strict=True)
    )
    rows: list[VersionRating] = []
    for version_id, (rating, low, high, count) in result.as_dict().items():
        old = previous.get(version_id)
        win_rate, decision = None, None
        if old is not None:
            win_rate, _ = head_to_head(win_versions, lose_versions, ties, version_id, old)
            enough = min(per_version_rankings[version_id], per_version_rankings[old])
            decision = UNDECIDED
            if result.samples is not None and enough >= MIN_RANKINGS_FOR_VERDICT:
                _, diff_low, diff_high = difference_interval(result, version_id, old)
                decision = verdict(diff_low, diff_high)
        rows.append(
            VersionRating(
                version_id=version_id,
                rating=rating,
                ci_low=low,
                ci_high=high,
                comparisons=count,
                elo=elo[version_id],
                previous_id=old,
                win_rate_vs_previous=win_rate,
                verdict=decision,
            )
        )
    return rows


def consensus_order(scores: Mapping[int, float]) -> list[int]:
    """Sample ids best first by consensus score (ties by id, for a stable page)."""
    return sorted(scores, key=lambda sample_id: (-scores[sample_id], sample_id))
