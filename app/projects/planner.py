"""The study planner's math: how many more rankings reach a target reward-model accuracy, or a
decisive verdict between the current and the previous version. Pure numpy, no database.

Both estimates extrapolate a learning curve measured so far (docs/training-notes.md §Study
planner): held-out accuracy against rankings used, acc(n) = a − b·n^(−c), and the width of the
rating difference's interval against rankings, width(n) = k·n^(−1/2). Each comes with an 80%
range (PLAN_LEVEL): a planning range, not a test.

The arguments are plain sequences of numbers so a benchmark can call these functions with the
points of its own runs (bench/efficiency.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

PLAN_LEVEL = 0.8
"""Central share of a plan's range. At 95 % the upper end of an undecided verdict is almost
always "never" (the difference's own 95 % interval holds 0, where no number of rankings
decides), which tells an admin nothing; 80 % is the usual range of a forecast."""

DEFAULT_MARGIN = 0.02
"""Without a target, aim at the curve's plateau less this: the last points of accuracy cost
the most rankings (n grows like (b / margin)^(1/c)), and 0.02 is below what a held-out set
of a few hundred rankings can tell apart."""

PRIOR_EXPONENT = 0.5
"""The accuracy curve's c when fewer than 3 points cannot fit it: the 1/√n rate of an
estimate's error, and about the middle of the exponents reported for learning curves
(Hestness et al. 2017, arXiv 1712.00409; Kaplan et al. 2020, arXiv 2001.08361)."""

PRIOR_LOG_SD = 0.5
"""With 3 or more points c is fitted, with a log-normal prior around PRIOR_EXPONENT of this
standard deviation in ln c (c within a factor 2.7 either way at 2 sd): on a few noisy points c
trades off against a and b, and an unpenalised fit swings between a plateau below the target
and one far above it (a third to a half of the simulated curves, 4 points over a decade)."""

EXPONENT_GRID = np.geomspace(0.1, 1.5, 57)
"""The c a fit may choose (profiled on this grid): with three or four points c trades off
against a and b, and outside this range an extrapolation says more about the fit than the
data."""

BOOTSTRAP = 200
"""Refits of the accuracy curve for its range (the service's bound for the project page)."""

OPEN_ENDED = 100
"""A range that reaches past this many times the rankings so far is open-ended, and an estimate
past it is none: extrapolating a learning curve two orders of magnitude is no forecast."""

WIDTH_EXPONENT = 0.5
"""An interval of a mean-like estimate shrinks like 1/√n; the prefixes only check it."""

_DRAWS = 4000


@dataclass(frozen=True)
class Plan:
    """An estimate of the rankings still needed, with its range and what it rests on.

    `estimate` is None when no estimate can be made (`reason` says why in one line); 0 means
    the goal is reached. `high` None with `estimate` set means the range is open-ended: in
    part of the resampled curves the goal is never reached.
    """

    goal: str
    """"accuracy" or "verdict"."""
    estimate: int | None
    """More rankings needed (rounded up), beyond `now`."""
    low: int | None
    high: int | None
    now: int
    """Rankings so far: the estimate counts from here."""
    basis: tuple[int, ...]
    """Rankings behind each point the curve was fitted to, in order."""
    target: float | None = None
    """The accuracy aimed at (goal "accuracy")."""
    plateau: float | None = None
    """The accuracy curve's asymptote a (goal "accuracy")."""
    exponent: float | None = None
    """The curve's c (accuracy), or the exponent the interval widths shrank with on the
    prefixes (verdict; None with fewer than 3 prefixes): a check of 1/√n."""
    difference: float | None = None
    """The current rating difference, new minus old (goal "verdict")."""
    reason: str | None = None
    level: float = PLAN_LEVEL

    @property
    def open_ended(self) -> bool:
        return self.estimate is not None and self.high is None


# Accuracy curve


def binomial_se(accuracy: float, count: float) -> float:
    """Standard error of an accuracy measured on `count` held-out items, never 0 (a perfect
    score on 50 items is not certain): p is shrunk by half an item towards 1/2."""
    p = (accuracy * count + 0.5) / (count + 1.0)
    return math.sqrt(p * (1.0 - p) / max(count, 1.0))


def _fit_curves(
    n: np.ndarray, acc: np.ndarray, se: np.ndarray, exponents: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of acc = a − b·n^(−c) for each row of `acc` (R, P), profiled over
    `exponents` (G,) with the prior on c: (a, b, c), each (R,). For a fixed c the fit is linear
    in (a, b), solved in closed form."""
    w = 1.0 / se**2  # (P,)
    x = n[None, :] ** -exponents[:, None]  # (G, P)
    sw = w.sum()
    x_bar = (x * w).sum(1) / sw  # (G,)
    y_bar = (acc * w).sum(1) / sw  # (R,)
    dx = x - x_bar[:, None]  # (G, P)
    sxx = (w * dx**2).sum(1)  # (G,)
    sxy = np.einsum("gp,rp->rg", w * dx, acc - y_bar[:, None])  # (R, G)
    slope = sxy / sxx  # (R, G): −b
    a = y_bar[:, None] - slope * x_bar[None, :]  # (R, G)
    fitted = a[:, :, None] + slope[:, :, None] * x[None, :, :]  # (R, G, P)
    chi2 = (w * (acc[:, None, :] - fitted) ** 2).sum(2)  # (R, G)
    chi2 = chi2 + (np.log(exponents / PRIOR_EXPONENT) / PRIOR_LOG_SD)[None, :] ** 2  # prior
    best = chi2.argmin(1)  # (R,)
    rows = np.arange(len(acc))
    return a[rows, best], -slope[rows, best], exponents[best]


def _rankings_for(a: np.ndarray, b: np.ndarray, c: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Total rankings at which a − b·n^(−c) reaches `target`: inf when it never does (a
    target at or above the plateau, or a curve that does not rise), 0 when a flat curve is
    already there."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        needed = (b / (a - target)) ** (1.0 / c)
    rising = b > 0
    return np.where(
        rising,
        np.where(a > target, needed, np.inf),
        np.where(a >= target, 0.0, np.inf),
    )


def accuracy_plan(
    rankings: Sequence[int],
    accuracies: Sequence[float],
    counts: Sequence[float],
    *,
    target: float | None = None,
    now: int | None = None,
    level: float = PLAN_LEVEL,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> Plan:
    """Rankings still needed until held-out accuracy reaches `target`.

    rankings: rankings behind each reward model (its snapshot's); accuracies: its held-out
    accuracy (0–1); counts: how many held-out items that accuracy was measured on (its binomial
    standard error weights the point). `target` None aims at the plateau less DEFAULT_MARGIN,
    in each resampled curve too. `now` defaults to the largest of `rankings`. The range comes
    from a parametric bootstrap: each accuracy redrawn from its standard error, and refitted.
    """
    if not len(rankings) == len(accuracies) == len(counts):
        raise ValueError("rankings, accuracies and counts must have the same length")
    if target is not None and not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    n = np.asarray(rankings, dtype=float)
    acc = np.asarray(accuracies, dtype=float)
    m = np.asarray(counts, dtype=float)
    keep = (n > 0) & (m > 0) & np.isfinite(acc)
    n, acc, m = n[keep], acc[keep], m[keep]
    order = np.argsort(n, kind="stable")
    n, acc, m = n[order], acc[order], m[order]
    basis = tuple(int(v) for v in n)
    current = int(now if now is not None else (n.max() if len(n) else 0))
    plan = Plan("accuracy", None, None, None, current, basis, target=target, level=level)
    if len(np.unique(n)) < 2:
        return _no(
            plan,
            "More reward models are needed: a curve needs two, trained on "
            "different numbers of rankings.",
        )
    se = np.array([binomial_se(p, c) for p, c in zip(acc, m, strict=True)])
    exponents = EXPONENT_GRID if len(np.unique(n)) >= 3 else np.array([PRIOR_EXPONENT])

    a, b, c = (v[0] for v in _fit_curves(n, acc[None, :], se, exponents))
    if b <= 0:
        return _no(
            plan,
            "Held-out accuracy did not rise with more rankings: the curve gives no estimate.",
            plateau=float(a),
            exponent=float(c),
        )
    goal = a - DEFAULT_MARGIN if target is None else target
    total = float(_rankings_for(np.array([a]), np.array([b]), np.array([c]), np.array([goal]))[0])
    fitted = {"plateau": float(a), "exponent": float(c), "target": float(goal)}
    if not math.isfinite(total):
        return _no(plan, f"{goal:.0%} is above what the curve levels off at ({a:.0%}).", **fitted)

    rng = np.random.default_rng(seed)
    redrawn = np.clip(acc + rng.standard_normal((bootstrap, len(acc))) * se, 0.0, 1.0)
    ra, rb, rc = _fit_curves(n, redrawn, se, exponents)
    goals = ra - DEFAULT_MARGIN if target is None else np.full(bootstrap, target)
    totals = _rankings_for(ra, rb, rc, goals)
    return _ranged(plan, total, totals, **fitted)


def rankings_for_accuracy(
    rankings: Sequence[int],
    accuracies: Sequence[float],
    counts: Sequence[float],
    *,
    target: float | None = None,
    level: float = PLAN_LEVEL,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> Plan:
    """`accuracy_plan` counted from no rankings: `estimate`, `low` and `high` are the total
    rankings that reach `target` (what a benchmark compares with the rankings a run needed)."""
    return accuracy_plan(
        rankings,
        accuracies,
        counts,
        target=target,
        now=0,
        level=level,
        bootstrap=bootstrap,
        seed=seed,
    )


# Verdict curve


def width_exponent(rankings: Sequence[int], widths: Sequence[float]) -> float | None:
    """The exponent e of width ∝ n^(−e), fitted in log space; None with fewer than 3 distinct
    points (two always fit exactly)."""
    n = np.asarray(rankings, dtype=float)
    w = np.asarray(widths, dtype=float)
    ok = (n > 0) & (w > 0) & np.isfinite(w)
    if len(np.unique(n[ok])) < 3:
        return None
    slope = np.polyfit(np.log(n[ok]), np.log(w[ok]), 1)[0]
    return float(-slope)


def verdict_plan(
    rankings: Sequence[int],
    widths: Sequence[float],
    difference: float,
    low: float,
    high: float,
    *,
    now: int | None = None,
    level: float = PLAN_LEVEL,
    seed: int = 0,
) -> Plan:
    """Rankings still needed until the interval of the new-minus-old rating difference
    excludes 0.

    rankings, widths: the interval's width (high − low) measured on growing prefixes of the
    comparisons, the last one all of them; (difference, low, high): the interval now. The
    width is taken to shrink like 1/√n from its value now (the prefixes check the exponent,
    `Plan.exponent`); the side of the interval facing 0 keeps its share of the width. The
    range comes from the difference's own uncertainty: a true difference nearer 0 needs more.
    The point fit may sit a rounding error (or, with a skewed bootstrap, more) outside its
    percentile interval; only the side facing 0 matters, which stays positive while undecided.
    """
    if len(rankings) != len(widths):
        raise ValueError("rankings and widths must have the same length")
    basis = tuple(int(v) for v in rankings)
    current = int(now if now is not None else (max(basis) if basis else 0))
    plan = Plan(
        "verdict",
        None,
        None,
        None,
        current,
        basis,
        exponent=width_exponent(rankings, widths),
        difference=difference,
        level=level,
    )
    if low > 0 or high < 0:
        return _ranged(plan, float(current), np.array([float(current)]))
    width = high - low
    if current <= 0 or width <= 0:
        return _no(plan, "No interval of the difference to extrapolate yet.")
    if difference == 0:
        return _no(
            plan,
            "The two versions are rated equal: no number of rankings is "
            "expected to tell them apart.",
        )

    def total_for(d: np.ndarray) -> np.ndarray:
        # The side facing 0 (low side for a positive difference) shrinks like 1/√n, until
        # it is as short as the difference itself.
        side = np.where(d > 0, difference - low, high - difference)
        with np.errstate(divide="ignore"):
            return current * (side / np.abs(d)) ** (1.0 / WIDTH_EXPONENT)

    # An interval that touches 0 (a bootstrap bound exactly 0) is undecided still: one more.
    total = max(float(total_for(np.array([difference]))[0]), current + 1.0)
    sd = width / (2.0 * norm.ppf(0.975))
    draws = np.random.default_rng(seed).normal(difference, sd, _DRAWS)
    return _ranged(plan, total, total_for(draws))


# Shared


def _no(plan: Plan, reason: str, **fields: float) -> Plan:
    return _replace(plan, reason=reason, **fields)


def _ranged(plan: Plan, total: float, totals: np.ndarray, **fields: float) -> Plan:
    """The estimate and its central `level` range in more rankings (rounded up). A percentile
    range of a skewed statistic can miss its point estimate; it is stretched to include it.
    Totals past OPEN_ENDED times the rankings so far count as never."""
    limit = OPEN_ENDED * max(plan.now, *plan.basis, 1)
    if total > limit:
        reason = f"Over {OPEN_ENDED} times the rankings so far: past what the curve can forecast."
        return _no(plan, reason, **fields)
    totals = np.where(totals > limit, np.inf, totals)
    more = _more(total, plan.now)
    tail = (1.0 - plan.level) / 2.0
    lo = float(np.quantile(totals, tail, method="lower"))
    hi = float(np.quantile(totals, 1.0 - tail, method="higher"))
    low = min(_more(lo, plan.now), more) if math.isfinite(lo) else more
    high = None if not math.isfinite(hi) else max(_more(hi, plan.now), more)
    return _replace(plan, estimate=more, low=low, high=high, **fields)


def _more(total: float, now: int) -> int:
    if not math.isfinite(total):
        raise ValueError("an infinite total has no count")
    return max(0, math.ceil(total - now - 1e-9))


def _replace(plan: Plan, **fields: object) -> Plan:
    return dataclasses.replace(plan, **fields)  # type: ignore[arg-type]
