"""Bradley-Terry ratings with bootstrap intervals, as Chatbot Arena reports them
(docs/training-notes.md §Bradley-Terry).

Model: P(a beats b) = σ(ln10 · (β_a − β_b)); rating R = 400 β + 1000; ties count as half a win
each way. Speed comes from fitting on aggregated win counts, one entry per compared pair of
items (the K×K win matrix, stored sparsely), not on the raw or even the unique rows: a million
comparisons among 200 items collapse to ≤ 19,900 pairs, and Newton's method converges on them
in a handful of steps (two or three from a warm start, for each bootstrap round).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from app.ratings.elo import INITIAL, SCALE
from app.ratings.pairs import ranking_to_pairs

LN10 = math.log(10.0)
DENSE_MAX_ITEMS = 1000
"""Above this many items the Hessian is never a dense matrix (8 MB at 1000)."""
DENSE_ALWAYS_ITEMS = 200
"""Up to this many items it always is: a 200×200 product takes microseconds."""
DENSE_MIN_FILL = 1 / 16
"""Between the two, dense only when the compared pairs fill this share of the K×K matrix (a
leaderboard's versions, Arena's 200 models). A project's samples are compared only inside
their own prompt (6 pairs per 4 samples): at 800 samples a dense product was 60× slower
than the sparse one, and the ratings job took 20-70 s instead of 1 (bench/ratings_service.py
--split)."""
BETTER, WORSE, UNDECIDED = "better", "worse", "not distinguishable yet"


@dataclass(frozen=True)
class Aggregated:
    """Comparisons deduplicated twice: unique (a, b, outcome) rows, which the bootstrap
    resamples, and unique item pairs with their win totals, which the fit uses.

    Item indices refer to positions in `ids`; every row and pair is stored with a < b.
    """

    ids: np.ndarray  # (K,) item ids, sorted
    row_a: np.ndarray  # (R,) int64
    row_b: np.ndarray  # (R,) int64
    row_outcome: np.ndarray  # (R,) score of a: 1.0 won, 0.5 tie, 0.0 lost
    row_count: np.ndarray  # (R,) int64, comparisons in the row
    row_weight: np.ndarray  # (R,) float, their summed weight (== row_count when unweighted)
    row_pair: np.ndarray  # (R,) index of the row's pair below
    pair_a: np.ndarray  # (E,) int64
    pair_b: np.ndarray  # (E,) int64
    pair_wins_a: np.ndarray  # (E,) weighted wins of a over b, ties half each way
    pair_wins_b: np.ndarray  # (E,) weighted wins of b over a
    n_comparisons: int

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> np.ndarray:
        """Comparisons per item (unweighted), aligned with `ids`."""
        k = self.n_items
        per_item = np.bincount(self.row_a, self.row_count, k) + np.bincount(
            self.row_b, self.row_count, k
        )
        return per_item.astype(np.int64)

    @property
    def wins(self) -> np.ndarray:
        """Dense (K, K) matrix, wins[i, j] = weighted wins of item i over item j.

        Built on demand: the fit never needs it, and for a project's thousands of samples it
        would not fit in memory.
        """
        k = self.n_items
        matrix = np.zeros((k, k))
        matrix[self.pair_a, self.pair_b] = self.pair_wins_a
        matrix[self.pair_b, self.pair_a] = self.pair_wins_b
        return matrix


def aggregate(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    weights: np.ndarray | None = None,
) -> Aggregated:
    """Group comparisons into unique rows and pairs, vectorised (0.1 s for a million).

    For a tie, which id is `winner` does not matter. Self-comparisons (two samples of the same
    policy version) say nothing about a difference and are dropped.
    """
    winners = np.asarray(winners, dtype=np.int64).ravel()
    losers = np.asarray(losers, dtype=np.int64).ravel()
    ties = np.asarray(ties, dtype=bool).ravel()
    if not len(winners) == len(losers) == len(ties):
        raise ValueError("winners, losers and ties must have the same length")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if len(weights) != len(winners):
            raise ValueError("weights must have one entry per comparison")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("weights must be finite and non-negative")
    keep = winners != losers
    if not keep.all():
        winners, losers, ties = winners[keep], losers[keep], ties[keep]
        weights = None if weights is None else weights[keep]
    n = len(winners)

    ids, index = _index_ids(np.concatenate([winners, losers]))
    k = len(ids)
    win, lose = index[:n], index[n:]
    a, b = np.minimum(win, lose), np.maximum(win, lose)
    code = np.where(ties, 1, np.where(win == a, 2, 0))  # a's score × 2
    keys = (a * k + b) * 3 + code
    row_keys, row_count, row_weight = _count_keys(keys, weights, 3 * k * k)
    row_outcome = (row_keys % 3) / 2.0
    pair_keys, row_pair = np.unique(row_keys // 3, return_inverse=True)
    n_pairs = len(pair_keys)
    return Aggregated(
        ids=ids,
        row_a=row_keys // 3 // k,
        row_b=row_keys // 3 % k,
        row_outcome=row_outcome,
        row_count=row_count.astype(np.int64),
        row_weight=row_weight,
        row_pair=row_pair,
        pair_a=pair_keys // k,
        pair_b=pair_keys % k,
        pair_wins_a=np.bincount(row_pair, row_weight * row_outcome, minlength=n_pairs),
        pair_wins_b=np.bincount(row_pair, row_weight * (1.0 - row_outcome), minlength=n_pairs),
        n_comparisons=n,
    )


def _index_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids, index of each value): np.unique(return_inverse=True), but O(n)
    through a lookup table when the ids are database keys no larger than a few times n."""
    if len(values) and values.min() >= 0 and values.max() < 4 * len(values) + (1 << 20):
        present = np.zeros(int(values.max()) + 1, dtype=bool)
        present[values] = True
        ids = np.flatnonzero(present)
        lookup = np.cumsum(present) - 1
        return ids, lookup[values]
    ids, index = np.unique(values, return_inverse=True)
    return ids, index.ravel()


def _count_keys(
    keys: np.ndarray, weights: np.ndarray | None, n_keys: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, comparisons per key, summed weight per key), by counting when the key
    space is small (200 items: 120k keys) and by sorting otherwise."""
    if n_keys <= 2 * len(keys) + (1 << 20):
        count = np.bincount(keys, minlength=n_keys)
        unique = np.flatnonzero(count)
        summed = count if weights is None else np.bincount(keys, weights, n_keys)
        return unique, count[unique], summed[unique].astype(np.float64)
    if weights is None:
        unique, count = np.unique(keys, return_counts=True)
        return unique, count, count.astype(np.float64)
    unique, index = np.unique(keys, return_inverse=True)
    count = np.bincount(index.ravel(), minlength=len(unique))
    return unique, count, np.bincount(index.ravel(), weights, len(unique))


# Fit


def prior_penalty(beta: np.ndarray, prior: float) -> float:
    """The L2 prior added to the negative log-likelihood: prior · ln10² / 8 · Σ β².

    Its curvature equals that of `prior` drawn games of every item against a virtual opponent
    rated 1000, so prior=1 is "one pseudo-draw each": negligible after a few real games, yet
    an item that won every game gets a finite rating. It also pins the mean β to exactly 0.
    """
    return prior * LN10**2 / 8.0 * float(np.sum(beta * beta))


# The Newton system is solved by conjugate gradients, not a dense factorisation: on a busy
# worker (training next door), multithreaded OpenBLAS made a 200×200 Cholesky 50× slower.


def _logistic(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(σ(d), −ln σ(d)) from one exp; scipy's expit and np.logaddexp cost 5-20× more."""
    e = np.exp(-np.abs(d))
    p = np.where(d >= 0, 1.0, e) / (1.0 + e)
    return p, np.log1p(e) + np.maximum(-d, 0.0)


def _hessian(
    pa: np.ndarray, pb: np.ndarray, h: np.ndarray, ridge: float, k: int
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """(v ↦ H v, diag H) for H = graph Laplacian with pair weights h, plus ridge · I.

    Dense for few items or many pairs (see dense_hessian), otherwise a sparse matrix with one
    entry per pair, so a project's thousands of samples need no K×K.
    """
    if dense_hessian(k, len(pa)):
        hess = np.zeros((k, k))
        hess[pa, pb] = -h
        hess[pb, pa] = -h
        diag = ridge - hess.sum(axis=1)
        hess[np.diag_indices(k)] = diag
        return hess.__matmul__, diag
    diag = np.bincount(pa, h, k) + np.bincount(pb, h, k) + ridge
    rows = np.concatenate([pa, pb, np.arange(k)])
    cols = np.concatenate([pb, pa, np.arange(k)])
    sparse = scipy.sparse.csr_array((np.concatenate([-h, -h, diag]), (rows, cols)), shape=(k, k))
    return sparse.__matmul__, diag


def dense_hessian(k: int, n_pairs: int) -> bool:
    """Whether the Newton system of `k` items and `n_pairs` compared pairs is a dense matrix:
    a dense product costs K², a sparse one about 3 pairs plus scipy's overhead (~5 µs)."""
    if k > DENSE_MAX_ITEMS:
        return False
    return k <= DENSE_ALWAYS_ITEMS or 2 * n_pairs >= DENSE_MIN_FILL * k * k


def _pcg(
    matvec: Callable[[np.ndarray], np.ndarray], diag: np.ndarray, rhs: np.ndarray, rtol: float
) -> np.ndarray:
    """Solve H x = rhs by Jacobi-preconditioned conjugate gradients to relative residual rtol.

    H is diagonally dominant and positive definite, so this takes a few dozen products. The
    sums are np.add.reduce, np.sum's own kernel without its Python wrapper (3.4 µs, not 6.8,
    at 800 items): a ratings job's bootstraps run this loop about 15,000 times.
    """
    total = np.add.reduce
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diag
    direction = z.copy()
    rz = total(r * z)
    stop = rtol**2 * total(rhs * rhs)
    for _ in range(10 * len(rhs) + 100):
        if total(r * r) <= stop:  # also catches rhs = 0 (already at the optimum)
            break
        h_dir = matvec(direction)
        alpha = rz / total(direction * h_dir)
        x += alpha * direction
        r -= alpha * h_dir
        z = r / diag
        rz, rz_old = total(r * z), rz
        direction = z + (rz / rz_old) * direction
    return x


def _newton(
    agg: Aggregated,
    wins_a: np.ndarray,
    wins_b: np.ndarray,
    prior: float,
    start: np.ndarray | None,
    tol: float,
    max_iter: int,
) -> np.ndarray:
    """Damped Newton on the pair-aggregated likelihood: each step costs O(pairs), not O(rows)."""
    k, pa, pb = agg.n_items, agg.pair_a, agg.pair_b
    if k == 0:
        return np.zeros(0)
    ridge = prior * LN10**2 / 4.0  # the prior's curvature
    games = wins_a + wins_b  # (E,)

    def evaluate(beta: np.ndarray) -> tuple[float, np.ndarray]:
        """(objective, P(a beats b) per pair)."""
        d = LN10 * (beta[pa] - beta[pb])  # (E,)
        p, softplus_neg = _logistic(d)  # −ln σ(−d) = softplus_neg + d
        nll = np.sum(wins_a * softplus_neg) + np.sum(wins_b * (softplus_neg + d))
        return float(nll) + prior_penalty(beta, prior), p

    beta = np.zeros(k) if start is None else np.array(start, dtype=np.float64)
    f, p = evaluate(beta)
    for _ in range(max_iter):
        resid = games * p - wins_a  # (E,) expected minus observed wins of a
        grad = LN10 * (np.bincount(pa, resid, k) - np.bincount(pb, resid, k)) + ridge * beta
        matvec, diag = _hessian(pa, pb, LN10**2 * games * p * (1.0 - p), ridge, k)
        # Inexact Newton: solve loosely while far away, tightly near the optimum (the
        # Jacobi step estimates the distance), which keeps the quadratic convergence.
        rtol = min(1e-2, max(1e-12, float(np.max(np.abs(grad) / diag))))
        step = -_pcg(matvec, diag, grad, rtol)
        if np.max(np.abs(step)) < tol:
            beta = beta + step
            break
        # Backtracking keeps far-from-optimum starts (lopsided data) from overshooting.
        t, slope = 1.0, float(np.sum(grad * step))
        while True:
            candidate = beta + t * step
            f_new, p_new = evaluate(candidate)
            if f_new <= f + 1e-4 * t * slope + 1e-12 * abs(f) or t < 1e-6:
                break
            t /= 2.0
        beta, f, p = candidate, f_new, p_new
    else:
        warnings.warn("Bradley-Terry fit did not converge", RuntimeWarning, stacklevel=3)
    return beta - beta.mean()


def fit(
    agg: Aggregated,
    prior: float = 1.0,
    *,
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> np.ndarray:
    """Maximum a posteriori β (log10 scale, mean 0), aligned with `agg.ids`.

    Minimises −Σ w [y ln σ(ln10 Δβ) + (1−y) ln σ(−ln10 Δβ)] + `prior_penalty`. `start` is a
    warm start (the point estimate, for bootstrap rounds); `tol` bounds the last step in β.
    """
    if prior <= 0:
        raise ValueError("prior must be > 0: without it an item that always wins diverges")
    return _newton(agg, agg.pair_wins_a, agg.pair_wins_b, prior, start, tol, max_iter)


# Ratings with bootstrap intervals


@dataclass
class BTResult:
    """Ratings on the Elo scale (R = 400 β + 1000), aligned with `ids`."""

    ids: np.ndarray  # (K,)
    ratings: np.ndarray  # (K,) R = 400 β + 1000, centred so mean β = 0
    lower: np.ndarray | None  # (K,) 2.5th bootstrap percentile; None without bootstrap
    upper: np.ndarray | None  # (K,) 97.5th bootstrap percentile
    counts: np.ndarray  # (K,) comparisons per item
    n_comparisons: int
    samples: np.ndarray | None = None  # (bootstrap, K) ratings of each bootstrap round

    @classmethod
    def of(cls, agg: Aggregated, beta: np.ndarray, samples: np.ndarray | None) -> BTResult:
        """The point fit `beta`, with 95% percentile intervals when bootstrap rounds ran."""
        lower = upper = None
        if samples is not None:
            lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
        return cls(
            ids=agg.ids,
            ratings=to_ratings(beta),
            lower=lower,
            upper=upper,
            counts=agg.counts,
            n_comparisons=agg.n_comparisons,
            samples=samples,
        )

    def as_dict(self) -> dict[int, tuple[float, float | None, float | None, int]]:
        """{id: (rating, lower, upper, comparisons)}, ready to store per sample or version."""
        out: dict[int, tuple[float, float | None, float | None, int]] = {}
        for i, item_id in enumerate(self.ids.tolist()):
            lower = None if self.lower is None else float(self.lower[i])
            upper = None if self.upper is None else float(self.upper[i])
            out[item_id] = (float(self.ratings[i]), lower, upper, int(self.counts[i]))
        return out

    def index_of(self, item_id: int) -> int:
        """Position of `item_id` in `ids`; KeyError when it was never compared."""
        i = int(np.searchsorted(self.ids, item_id))
        if i == len(self.ids) or self.ids[i] != item_id:
            raise KeyError(f"item {item_id} has no comparisons")
        return i


def to_ratings(beta: np.ndarray) -> np.ndarray:
    """β (log10 odds) to the Elo-like scale the product shows."""
    return SCALE * beta + INITIAL


def fit_ratings(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    *,
    bootstrap: int = 100,
    prior: float = 1.0,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> BTResult:
    """Point fit plus 95% percentile intervals from `bootstrap` rounds (0: no intervals).

    Each round resamples the unique rows by multinomial draws over their counts (Arena's
    scheme; a weighted row keeps its mean weight per comparison), re-aggregates the pair
    totals and refits from the point estimate, which converges in 2-4 Newton steps.
    """
    agg = aggregate(winners, losers, ties, weights)
    beta = fit(agg, prior)
    samples = None
    if bootstrap > 0 and agg.n_items > 0:
        rng = np.random.default_rng(seed)
        mean_weight = agg.row_weight / np.maximum(agg.row_count, 1)
        pvals = agg.row_count / agg.row_count.sum()
        n_pairs = len(agg.pair_a)
        samples = np.empty((bootstrap, agg.n_items))
        for r in range(bootstrap):
            draw = rng.multinomial(agg.n_comparisons, pvals) * mean_weight  # (R,)
            wins_a = np.bincount(agg.row_pair, draw * agg.row_outcome, n_pairs)
            wins_b = np.bincount(agg.row_pair, draw * (1.0 - agg.row_outcome), n_pairs)
            samples[r] = to_ratings(_newton(agg, wins_a, wins_b, prior, beta, 1e-6, 100))
    return BTResult.of(agg, beta, samples)


def difference_interval(
    result: BTResult, new_id: int, old_id: int, level: float = 0.95
) -> tuple[float, float, float]:
    """(difference, lower, upper) of R_new − R_old in rating points.

    Taken from the same bootstrap rounds, so the two ratings' correlation is kept: two
    overlapping per-item intervals can still give a difference clearly above 0.
    """
    if result.samples is None:
        raise ValueError("difference_interval needs a fit with bootstrap > 0")
    i, j = result.index_of(new_id), result.index_of(old_id)
    diffs = result.samples[:, i] - result.samples[:, j]
    tail = (1.0 - level) / 2.0 * 100.0
    lower, upper = np.percentile(diffs, [tail, 100.0 - tail])
    return float(result.ratings[i] - result.ratings[j]), float(lower), float(upper)


def verdict(lower: float, upper: float) -> str:
    """Promotion wording for an interval of new-minus-old: only a clear sign decides."""
    if lower > 0:
        return BETTER
    if upper < 0:
        return WORSE
    return UNDECIDED


def consensus_scores(rankings: Sequence[Sequence[Sequence[int]]]) -> dict[int, float]:
    """Consensus rating of one prompt's samples from all its annotators' rankings.

    Empty rankings ("none usable") are skipped; the prior keeps a sample that everyone put
    first at a finite score.
    """
    winners: list[int] = []
    losers: list[int] = []
    ties: list[bool] = []
    for groups in rankings:
        if not groups:
            continue
        for pair in ranking_to_pairs(groups):
            winners.append(pair.winner)
            losers.append(pair.loser)
            ties.append(pair.tie)
    if not winners:
        return {}
    result = fit_ratings(np.array(winners), np.array(losers), np.array(ties), bootstrap=0)
    return dict(zip(result.ids.tolist(), result.ratings.tolist(), strict=True))
