"""Position bias: how often the first-shown card is ranked first, and a Bradley-Terry fit with a
first-card term that removes it from the ratings (docs/training-notes.md §Position bias).

Cards are shown in a hash-seeded shuffle per task and annotator (app.annotation.service
.display_order, stored in Ranking.display_order), so without a position effect the first card
is a uniformly drawn sample of the ranking. Two measures:

1. The first-card rate: per ranking of K cards whose top group holds g cards, X = 1/g when the
   first-shown card is in the top group, else 0. With no position effect E[X] = 1/K whatever
   the ties, so the expected rate is mean(1/K_r).
2. γ in P(a ≻ b) = σ(ln10·(β_a − β_b) + γ·(f_a − f_b)), f = 1 for the first-shown card, fitted
   jointly with β by Newton's method on rows aggregated by (a, b, d = f_a − f_b).

Pure numpy down to "# Queries"; the functions below it read the database.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, exists, false, select
from sqlalchemy.orm import Session

from app.models import AnnotatorExclusion, Project, Ranking, RankingTask
from app.ratings import repository
from app.ratings.bradley_terry import (
    LN10,
    BTResult,
    _hessian,
    _index_ids,
    _logistic,
    _pcg,
    prior_penalty,
    to_ratings,
)
from app.ratings.elo import SCALE
from app.ratings.leaderboard import fit_by_ranking
from app.ratings.schemas import PositionBiasOut

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile: the level of the interval and of the verdict (α = 0.05)."""
MIN_RANKINGS = 10
"""Fewer usable rankings than this never count as a significant bias (as the leaderboard's
MIN_RANKINGS_FOR_VERDICT): three rankings that all put the first card first have p ≈ 0.02 at
K = 4, yet switching the ratings' model on three votes would be noise-chasing."""


# The first-card rate


@dataclass(frozen=True)
class FirstCardRate:
    """How often the first-shown card was ranked first, against chance."""

    rankings: int
    """Usable rankings of at least two cards that recorded their display order."""
    rate: float
    """mean X_r: X_r = 1/g when the first card is in the top group of g cards, else 0."""
    expected: float
    """mean 1/K_r: the rate with no position effect."""
    lower: float
    """Wilson 95% interval of the rate (see first_card_rate)."""
    upper: float
    significant: bool
    """The expectation lies outside the interval, with at least MIN_RANKINGS rankings."""

    @property
    def excess(self) -> float:
        """rate / expected: 1 is no bias, 1.3 means the first card wins 30% more often."""
        return self.rate / self.expected if self.expected else math.nan


def first_card_score(display_order: Sequence[int], groups: Sequence[Sequence[int]]) -> float:
    """X for one ranking: 1/g if the first-shown card is in the top group of g cards, else 0."""
    top = groups[0]
    return 1.0 / len(top) if display_order[0] in top else 0.0


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a mean of n values in [0, 1] summing to `successes`."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def first_card_rate(
    rankings: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
) -> FirstCardRate | None:
    """The first-card rate of (display order, groups) rankings; None when none is usable.

    Rankings with no groups (none usable), no recorded order or fewer than two cards say
    nothing and are skipped. The interval is Wilson's score interval on Σ X_r out of n, i.e.
    the normal approximation to a sum of Bernoulli(p) draws solved for p rather than plugging
    in p̂, so it stays sensible near 0 and 1 and for a few dozen rankings. Each X_r lies in
    [0, 1] and its variance is at most p(1 − p); with mixed K or a tied top group it is
    smaller (under no bias, Var X_r = 1/(g K) − 1/K²), so the interval is then slightly
    conservative. With one K and no ties, "the expectation lies outside the interval" is
    exactly the two-sided score z-test at α = 0.05.
    """
    scores: list[float] = []
    chance: list[float] = []
    for order, groups in rankings:
        if not groups or len(order) < 2 or order[0] not in {s for g in groups for s in g}:
            continue
        scores.append(first_card_score(order, groups))
        chance.append(1.0 / len(order))
    n = len(scores)
    if n == 0:
        return None
    rate, expected = float(np.mean(scores)), float(np.mean(chance))
    lower, upper = wilson(float(np.sum(scores)), n)
    significant = n >= MIN_RANKINGS and not lower <= expected <= upper
    return FirstCardRate(n, rate, expected, lower, upper, significant)


# Bradley-Terry with a first-card term


@dataclass(frozen=True)
class PositionRows:
    """Comparisons aggregated by (a, b, d), d = f_a − f_b, with a < b as item indices.

    Rows sharing (a, b) but not d share a pair: the β-block of the Hessian is built per pair
    (bradley_terry._hessian writes one entry per pair). Per-comparison columns stay for the
    ranking bootstrap and the clustered standard error of γ.
    """

    ids: np.ndarray  # (K,) item ids, sorted
    pair_a: np.ndarray  # (E,)
    pair_b: np.ndarray  # (E,)
    row_pair: np.ndarray  # (R,) index into the pairs
    row_d: np.ndarray  # (R,) float: −1, 0 or 1
    row_wins_a: np.ndarray  # (R,) weighted wins of a, ties half
    row_wins_b: np.ndarray  # (R,)
    comp_row: np.ndarray  # (n,) row of each kept comparison
    comp_score_a: np.ndarray  # (n,) 1, 0.5 or 0
    comp_weight: np.ndarray  # (n,)
    comp_cluster: np.ndarray  # (n,) 0..C−1, the comparison's ranking
    n_comparisons: int

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> np.ndarray:
        """Comparisons per item (unweighted), aligned with `ids`."""
        k = self.n_items
        a = self.pair_a[self.row_pair][self.comp_row]
        b = self.pair_b[self.row_pair][self.comp_row]
        return (np.bincount(a, minlength=k) + np.bincount(b, minlength=k)).astype(np.int64)

    def wins(self, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row totals (wins of a, wins of b) with each comparison weighted by `weight`."""
        r = len(self.row_d)
        w = weight * self.comp_weight
        return (
            np.bincount(self.comp_row, w * self.comp_score_a, r),
            np.bincount(self.comp_row, w * (1.0 - self.comp_score_a), r),
        )


def aggregate_positions(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    winner_first: np.ndarray,
    loser_first: np.ndarray,
    *,
    rankings: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> PositionRows:
    """Group comparisons into (a, b, d) rows. `rankings` (one id per comparison) clusters them
    for the bootstrap and γ's standard error; without it each comparison is its own cluster.
    Self-comparisons (same item) are dropped, as bradley_terry.aggregate does."""
    winners = np.asarray(winners, dtype=np.int64).ravel()
    losers = np.asarray(losers, dtype=np.int64).ravel()
    ties = np.asarray(ties, dtype=bool).ravel()
    wf = np.asarray(winner_first, dtype=bool).ravel()
    lf = np.asarray(loser_first, dtype=bool).ravel()
    n_all = len(winners)
    if not n_all == len(losers) == len(ties) == len(wf) == len(lf):
        raise ValueError("all comparison columns must have the same length")
    cluster = np.arange(n_all) if rankings is None else np.asarray(rankings, np.int64).ravel()
    weight = np.ones(n_all) if weights is None else np.asarray(weights, np.float64).ravel()
    if len(cluster) != n_all or len(weight) != n_all:
        raise ValueError("rankings and weights need one entry per comparison")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("weights must be finite and non-negative")
    keep = winners != losers
    winners, losers, ties, wf, lf = winners[keep], losers[keep], ties[keep], wf[keep], lf[keep]
    cluster, weight = cluster[keep], weight[keep]
    n = len(winners)

    ids, index = _index_ids(np.concatenate([winners, losers]))
    k = len(ids)
    iw, il = index[:n], index[n:]
    a, b = np.minimum(iw, il), np.maximum(iw, il)
    a_won = iw == a
    f_a = np.where(a_won, wf, lf).astype(np.int64)
    f_b = np.where(a_won, lf, wf).astype(np.int64)
    score_a = np.where(ties, 0.5, np.where(a_won, 1.0, 0.0))
    row_keys, comp_row = np.unique((a * k + b) * 3 + (f_a - f_b + 1), return_inverse=True)
    pair_keys, row_pair = np.unique(row_keys // 3, return_inverse=True)
    _, cluster_index = np.unique(cluster, return_inverse=True)
    r = len(row_keys)
    comp_row = comp_row.ravel()
    return PositionRows(
        ids=ids,
        pair_a=pair_keys // k,
        pair_b=pair_keys % k,
        row_pair=row_pair.ravel(),
        row_d=(row_keys % 3 - 1).astype(np.float64),
        row_wins_a=np.bincount(comp_row, weight * score_a, r),
        row_wins_b=np.bincount(comp_row, weight * (1.0 - score_a), r),
        comp_row=comp_row,
        comp_score_a=score_a,
        comp_weight=weight,
        comp_cluster=cluster_index.ravel(),
        n_comparisons=n,
    )


def _gamma_ridge(prior: float) -> float:
    """Curvature of γ's prior: `prior` pseudo-draws between a first-shown card and another
    (each adds 1/4), so γ is 0, not undefined, when no comparison involved a first card."""
    return prior / 4.0


def _newton_position(
    rows: PositionRows,
    wins_a: np.ndarray,
    wins_b: np.ndarray,
    prior: float,
    start: tuple[np.ndarray, float] | None,
    fix_gamma: bool,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, float]:
    """Damped Newton over (β, γ). The β-block is bradley_terry's Laplacian-plus-ridge, solved by
    its conjugate gradients; γ joins through the Schur complement (two solves a step)."""
    k = rows.n_items
    if k == 0:
        return np.zeros(0), 0.0
    n_pairs = len(rows.pair_a)
    ra, rb, d = rows.pair_a[rows.row_pair], rows.pair_b[rows.row_pair], rows.row_d  # (R,)
    ridge, ridge_g = prior * LN10**2 / 4.0, _gamma_ridge(prior)
    games = wins_a + wins_b  # (R,)

    def evaluate(beta: np.ndarray, gamma: float) -> tuple[float, np.ndarray]:
        eta = LN10 * (beta[ra] - beta[rb]) + gamma * d  # (R,)
        p, softplus_neg = _logistic(eta)
        nll = np.sum(wins_a * softplus_neg) + np.sum(wins_b * (softplus_neg + eta))
        penalty = prior_penalty(beta, prior) + ridge_g / 2.0 * gamma * gamma
        return float(nll) + penalty, p

    beta = np.zeros(k) if start is None else np.array(start[0], dtype=np.float64)
    gamma = 0.0 if start is None or fix_gamma else float(start[1])
    f, p = evaluate(beta, gamma)
    for _ in range(max_iter):
        resid = games * p - wins_a  # (R,) ∂nll/∂η per row
        grad_b = LN10 * (np.bincount(ra, resid, k) - np.bincount(rb, resid, k)) + ridge * beta
        grad_g = float(np.sum(d * resid)) + ridge_g * gamma
        w = games * p * (1.0 - p)  # (R,)
        matvec, diag = _hessian(
            rows.pair_a, rows.pair_b, LN10**2 * np.bincount(rows.row_pair, w, n_pairs), ridge, k
        )
        rtol = min(1e-2, max(1e-12, float(np.max(np.abs(grad_b) / diag))))
        x1 = _pcg(matvec, diag, grad_b, rtol)
        if fix_gamma:
            step_b, step_g = -x1, 0.0
        else:
            # [[A, h], [hᵀ, c]] (Δβ, Δγ) = −(grad_b, grad_g), by the Schur complement of A
            h = LN10 * (np.bincount(ra, d * w, k) - np.bincount(rb, d * w, k))  # (K,)
            c = float(np.sum(d * d * w)) + ridge_g
            x2 = _pcg(matvec, diag, h, rtol)
            # np.sum, not h @ x: a BLAS dot on a busy worker took 40 ms (bradley_terry's note)
            v = (grad_g - float(np.sum(h * x1))) / (c - float(np.sum(h * x2)))
            step_b, step_g = -(x1 - x2 * v), -v
        if max(float(np.max(np.abs(step_b))), abs(step_g)) < tol:
            beta, gamma = beta + step_b, gamma + step_g
            break
        t, slope = 1.0, float(np.sum(grad_b * step_b)) + grad_g * step_g
        while True:
            cand_b, cand_g = beta + t * step_b, gamma + t * step_g
            f_new, p_new = evaluate(cand_b, cand_g)
            if f_new <= f + 1e-4 * t * slope + 1e-12 * abs(f) or t < 1e-6:
                break
            t /= 2.0
        beta, gamma, f, p = cand_b, cand_g, f_new, p_new
    else:
        warnings.warn("position Bradley-Terry fit did not converge", RuntimeWarning, stacklevel=3)
    return beta - beta.mean(), gamma


@dataclass(frozen=True)
class PositionFit:
    """β (log10 scale, mean 0, aligned with `ids`) and the first-card term γ (natural log-odds).

    exp(γ) is the odds multiplier of being preferred when shown first; γ/ln10·400 the same
    advantage in rating points. The interval is Wald's with a standard error clustered by
    ranking (None when no comparison involved a first-shown card, or γ was fixed at 0).
    """

    ids: np.ndarray
    beta: np.ndarray
    gamma: float
    gamma_lower: float | None
    gamma_upper: float | None
    n_comparisons: int

    @property
    def gamma_points(self) -> float:
        """γ in rating points: the rating gap that shifts the odds as much as going first."""
        return self.gamma / LN10 * SCALE


def _gamma_se(rows: PositionRows, beta: np.ndarray, gamma: float, prior: float) -> float | None:
    """Sandwich standard error of γ with scores summed per ranking: the K − 1 pairs of one
    ranking with its first card share the annotator and the moment and are not independent,
    so the model-based (inverse Hessian) error would be too small. Only the γ-row of the
    inverse Hessian is needed: (−(A⁻¹h)ᵀ, 1) / (c − hᵀA⁻¹h)."""
    k = rows.n_items
    ra, rb, d = rows.pair_a[rows.row_pair], rows.pair_b[rows.row_pair], rows.row_d
    if not np.any((d != 0) & (rows.row_wins_a + rows.row_wins_b > 0)):
        return None
    eta = LN10 * (beta[ra] - beta[rb]) + gamma * d
    p, _ = _logistic(eta)
    w = (rows.row_wins_a + rows.row_wins_b) * p * (1.0 - p)
    ridge, ridge_g = prior * LN10**2 / 4.0, _gamma_ridge(prior)
    matvec, diag = _hessian(
        rows.pair_a,
        rows.pair_b,
        LN10**2 * np.bincount(rows.row_pair, w, len(rows.pair_a)),
        ridge,
        k,
    )
    h = LN10 * (np.bincount(ra, d * w, k) - np.bincount(rb, d * w, k))
    x2 = _pcg(matvec, diag, h, 1e-10)
    schur = float(np.sum(d * d * w)) + ridge_g - float(np.sum(h * x2))
    # Per comparison: the γ-row of H⁻¹ times its score, up to the factor 1/schur
    row = rows.comp_row
    resid = rows.comp_weight * (p[row] - rows.comp_score_a)  # (n,)
    u = resid * (d[row] - LN10 * (x2[ra[row]] - x2[rb[row]]))  # (n,)
    per_ranking = np.bincount(rows.comp_cluster, u)
    return math.sqrt(float(np.sum(per_ranking**2))) / schur


def fit_position(
    rows: PositionRows, prior: float = 1.0, *, fix_gamma: bool = False, tol: float = 1e-10
) -> PositionFit:
    """MAP (β, γ): bradley_terry's objective and prior on β, plus γ·d in the logit and a weak
    prior on γ (one pseudo-draw, see _gamma_ridge). With fix_gamma, γ = 0 and β is the plain
    Bradley-Terry fit."""
    if prior <= 0:
        raise ValueError("prior must be > 0: without it an item that always wins diverges")
    beta, gamma = _newton_position(
        rows, rows.row_wins_a, rows.row_wins_b, prior, None, fix_gamma, tol, 100
    )
    lower = upper = None
    se = None if fix_gamma else _gamma_se(rows, beta, gamma, prior)
    if se is not None:
        lower, upper = gamma - Z95 * se, gamma + Z95 * se
    return PositionFit(rows.ids, beta, gamma, lower, upper, rows.n_comparisons)


@dataclass(frozen=True)
class CorrectedFit:
    """Ratings with the first-card term taken out, and the term itself."""

    result: BTResult
    position: PositionFit


def position_corrected_fit(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    rankings: np.ndarray,
    winner_first: np.ndarray,
    loser_first: np.ndarray,
    *,
    bootstrap: int = 100,
    prior: float = 1.0,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> CorrectedFit:
    """leaderboard.fit_by_ranking with the first-card term: the same point estimate when γ = 0,
    the same bootstrap over whole rankings (each round refits β and γ from the point
    estimate, so γ's uncertainty reaches the rating intervals). Items are whatever ids the
    columns hold: samples, or policy versions with the flags of their samples. `weights` are
    scaled to mean 1, as fit_by_ranking scales them."""
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        total = float(weights.sum())
        weights = weights * (len(weights) / total) if total > 0 else weights
    rows = aggregate_positions(
        winners, losers, ties, winner_first, loser_first, rankings=rankings, weights=weights
    )
    point = fit_position(rows, prior)
    samples = None
    if bootstrap > 0 and rows.n_items > 0:
        n_clusters = int(rows.comp_cluster.max()) + 1
        rng = np.random.default_rng(seed)
        samples = np.empty((bootstrap, rows.n_items))
        for r in range(bootstrap):
            draws = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters))
            wins_a, wins_b = rows.wins(draws[rows.comp_cluster].astype(np.float64))
            beta, _ = _newton_position(
                rows, wins_a, wins_b, prior, (point.beta, point.gamma), False, 1e-6, 100
            )
            samples[r] = to_ratings(beta)
    lower = upper = None
    if samples is not None:
        lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    result = BTResult(
        ids=rows.ids,
        ratings=to_ratings(point.beta),
        lower=lower,
        upper=upper,
        counts=rows.counts,
        n_comparisons=rows.n_comparisons,
        samples=samples,
    )
    return CorrectedFit(result, point)


def first_flags(
    rankings: np.ndarray, winners: np.ndarray, losers: np.ndarray, first: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(winner shown first, loser shown first) per comparison, from {ranking: first card}.

    Rankings without a recorded order (absent from `first`) flag neither card."""
    first_of = np.array([first.get(int(r), -1) for r in np.asarray(rankings).tolist()], np.int64)
    return np.asarray(winners) == first_of, np.asarray(losers) == first_of


# Queries and the leaderboard's section


def _usable_rankings(
    project_id: int, raters: repository.Raters = "human"
) -> Select[tuple[int, list[Any], list[Any]]]:
    """Rankings that count here: with groups, not of a gold task, not by an excluded annotator
    (as the ratings: what an exclusion takes out of the fit leaves the report too), of
    `raters` (the project's figure_raters: judges only when they count in human figures)."""
    return (
        select(Ranking.id, Ranking.display_order, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(
            Ranking.project_id == project_id,
            Ranking.none_usable.is_(False),
            RankingTask.gold == false(),
            repository.source_is(Ranking.source, raters),
            ~exists(
                select(AnnotatorExclusion.user_id).where(
                    AnnotatorExclusion.project_id == project_id,
                    AnnotatorExclusion.user_id == Ranking.user_id,
                )
            ),
        )
    )


def first_shown(session: Session, project_id: int) -> dict[int, int]:
    """{ranking id: the sample shown first} for the project's usable rankings with a recorded
    display order: the card flags of the ratings job's comparisons (see first_flags)."""
    raters = repository.figure_raters(session, project_id)
    rows = session.execute(_usable_rankings(project_id, raters)).all()
    return {rid: int(order[0]) for rid, order, groups in rows if order and groups}


@dataclass(frozen=True)
class PositionInput:
    """What the ratings job needs to correct for card order (FitInput.position)."""

    first: dict[int, int]
    """{ranking id: sample shown first}, see first_shown."""
    correct: bool
    """Fit the first-card term: Project.position_correction is on and the bias significant."""


def load_position(session: Session, project: Project) -> PositionInput:
    """The ratings job's position input, read in its load transaction."""
    raters = repository.figure_raters(session, project.id)
    rows = session.execute(_usable_rankings(project.id, raters)).all()
    rate = first_card_rate([(order or [], groups or []) for _, order, groups in rows])
    first = {rid: int(order[0]) for rid, order, groups in rows if order and groups}
    significant = rate is not None and rate.significant
    return PositionInput(first, bool(project.position_correction) and significant)


def fit_samples(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    rankings: np.ndarray,
    position: PositionInput | None,
    *,
    weights: np.ndarray | None = None,
) -> BTResult:
    """The ratings job's sample fit: with the first-card term when `position` says so, else
    leaderboard.fit_by_ranking (the same bootstrap and defaults either way)."""
    if position is None or not position.correct:
        return fit_by_ranking(winners, losers, ties, rankings, weights=weights)
    winner_first, loser_first = first_flags(rankings, winners, losers, position.first)
    return position_corrected_fit(
        winners, losers, ties, rankings, winner_first, loser_first, weights=weights
    ).result


def corrected_by_ranking(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    rankings: np.ndarray,
    *,
    winner_first: np.ndarray,
    loser_first: np.ndarray,
    bootstrap: int = 100,
    prior: float = 1.0,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> BTResult:
    """fit_by_ranking's signature plus the card flags, for a caller that takes a fit function
    (the version fit: the columns hold version ids, the flags come from their samples)."""
    return position_corrected_fit(
        winners,
        losers,
        ties,
        rankings,
        winner_first,
        loser_first,
        bootstrap=bootstrap,
        prior=prior,
        seed=seed,
        weights=weights,
    ).result


@dataclass(frozen=True)
class PositionReport:
    """The leaderboard's position-bias section."""

    rate: FirstCardRate
    fit: PositionFit | None
    """The joint fit on the included, non-gold comparisons; None without comparisons."""
    correction_enabled: bool
    """Project.position_correction."""

    @property
    def corrected(self) -> bool:
        """Whether the ratings include the position term (setting on and bias significant)."""
        return self.correction_enabled and self.rate.significant


def position_report(session: Session, project_id: int) -> PositionReport | None:
    """The first-card rate and γ of the project's usable rankings; None before any."""
    project = session.get(Project, project_id)
    if project is None:
        return None
    raters = repository.figure_raters(session, project_id)
    rows = session.execute(_usable_rankings(project_id, raters)).all()
    rate = first_card_rate([(order or [], groups or []) for _, order, groups in rows])
    if rate is None:
        return None
    first = {rid: int(order[0]) for rid, order, groups in rows if order and groups}
    c = repository.load_comparisons(session, project_id, include_excluded=False)
    fit = None
    if len(c):
        wf, lf = first_flags(c.ranking, c.winner, c.loser, first)
        agg = aggregate_positions(c.winner, c.loser, c.tie, wf, lf, rankings=c.ranking)
        fit = fit_position(agg)
    return PositionReport(rate, fit, bool(project.position_correction))


def position_bias_out(report: PositionReport | None) -> PositionBiasOut | None:
    """The report as the leaderboard API's `position_bias` object."""
    if report is None:
        return None
    rate, fit = report.rate, report.fit
    return PositionBiasOut(
        rankings=rate.rankings,
        first_card_rate=rate.rate,
        expected_rate=rate.expected,
        ci_low=rate.lower,
        ci_high=rate.upper,
        significant=rate.significant,
        gamma=fit.gamma if fit is not None else None,
        gamma_low=fit.gamma_lower if fit is not None else None,
        gamma_high=fit.gamma_upper if fit is not None else None,
        gamma_points=fit.gamma_points if fit is not None else None,
        corrected=report.corrected,
    )


def position_bias(session: Session, project_id: int) -> PositionBiasOut | None:
    """The leaderboard API's `position_bias` object (the API route adds it to the stored fit)."""
    return position_bias_out(position_report(session, project_id))
