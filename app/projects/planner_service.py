"""The study planner's use case: read the learning curves measured so far and ask
app.projects.planner how many more rankings reach a target accuracy or a decisive verdict.

Cheap enough for the project page: one grouped count per reward model's snapshot, the
comparisons the leaderboard fits (loaded once), at most PREFIXES Bradley-Terry refits of the
version pair with the leaderboard's own bootstrap, and one bootstrap of the accuracy curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app.models import Comparison, PolicyStatus, RewardModelVersion, SnapshotComparison
from app.projects import planner
from app.projects.planner import Plan
from app.projects.service import require_project
from app.ratings import repository as ratings_repository
from app.ratings.bradley_terry import difference_interval
from app.ratings.leaderboard import (
    BOOTSTRAP_ROUNDS,
    MIN_RANKINGS_FOR_VERDICT,
    VersionInfo,
    fit_by_ranking,
    previous_versions,
    rankings_per_item,
)
from app.ratings.repository import ComparisonArrays

PREFIXES = (0.25, 0.5, 0.75, 1.0)
"""Shares of the new version's rankings the verdict curve is measured on (by time)."""

PREFIX_BOOTSTRAP = 50
"""Bootstrap rounds of the partial prefixes, which only check the 1/√n exponent (all of them
uses the leaderboard's BOOTSTRAP_ROUNDS, so the interval planned from is the leaderboard's).
A round costs about 2 ms, whatever the project's size: 250 rounds a page view."""

_CACHE_SIZE = 64
_verdict_cache: dict[tuple[object, ...], tuple[Plan, int | None, int | None]] = {}
"""Verdict plans by project and a fingerprint of its comparisons and versions: the project
page refreshes every few seconds while sampling runs, and the refits only change with them."""

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class RewardModelPoint:
    """One reward model on the accuracy curve."""

    number: int
    rankings: int
    """Distinct rankings in its training snapshot (its held-out part included)."""
    accuracy: float
    count: float
    """Held-out items the accuracy's standard error rests on (see `_heldout_count`)."""


@dataclass(frozen=True)
class StudyPlan:
    """Both plans of a project and what they were measured on."""

    project_id: int
    rankings: int
    """Rankings so far, counted as a snapshot counts them (no gold, no excluded annotator)."""
    accuracy: Plan
    reward_models: list[RewardModelPoint]
    verdict: Plan
    new_version: int | None = None
    """Number of the version whose verdict against `old_version` is planned."""
    old_version: int | None = None


def study_plan(
    session: Session,
    *,
    project_id: int,
    target: float | None = None,
    bootstrap: int = planner.BOOTSTRAP,
) -> StudyPlan:
    """Plans for the project page and the API; `target` None lets the planner choose
    (its plateau less planner.DEFAULT_MARGIN)."""
    require_project(session, project_id)
    comparisons = ratings_repository.load_comparisons(session, project_id, include_excluded=False)
    now = len(np.unique(comparisons.ranking))
    points = reward_model_points(session, project_id)
    accuracy = planner.accuracy_plan(
        [p.rankings for p in points],
        [p.accuracy for p in points],
        [p.count for p in points],
        target=target,
        now=max([now, *(p.rankings for p in points)]),
        bootstrap=min(bootstrap, planner.BOOTSTRAP),
    )
    if not points:
        accuracy = replace(accuracy, reason="No reward model has been trained yet.")
    verdict, new, old = _verdict(session, project_id, comparisons)
    return StudyPlan(project_id, now, accuracy, points, verdict, new, old)


# Accuracy curve


def reward_model_points(session: Session, project_id: int) -> list[RewardModelPoint]:
    """The project's reward models with a held-out accuracy, on the newest one's base model
    (a curve mixes no base models), by number."""
    models = list(
        session.scalars(
            select(RewardModelVersion)
            .where(RewardModelVersion.project_id == project_id)
            .order_by(RewardModelVersion.number)
        )
    )
    if not models:
        return []
    base = models[-1].base_model
    models = [m for m in models if m.base_model == base]
    counts = _snapshot_rankings(session, project_id, [m.snapshot_id for m in models])
    points: list[RewardModelPoint] = []
    for m in models:
        accuracy = m.metrics.get("heldout_accuracy")
        count = _heldout_count(m.metrics)
        rankings = counts.get(m.snapshot_id) or _trained_on(m.metrics)
        if isinstance(accuracy, int | float) and count and rankings:
            points.append(RewardModelPoint(m.number, rankings, float(accuracy), count))
    return points


def _snapshot_rankings(
    session: Session, project_id: int, snapshot_ids: Sequence[int]
) -> dict[int, int]:
    """{snapshot: distinct rankings among its comparisons}, one grouped query. People's
    rankings only (what the plan is counted in), unless judges count in human figures."""
    rows = session.execute(
        select(SnapshotComparison.snapshot_id, func.count(distinct(Comparison.ranking_id)))
        .join(Comparison, Comparison.id == SnapshotComparison.comparison_id)
        .where(
            SnapshotComparison.snapshot_id.in_(set(snapshot_ids)),
            ratings_repository.in_human_figures(Comparison.source, project_id),
        )
        .group_by(SnapshotComparison.snapshot_id)
    ).all()
    return {int(s): int(n) for s, n in rows}


def _trained_on(metrics: dict[str, object]) -> int:
    """Rankings a run saw (train plus held out) when its snapshot's rows are gone."""
    total = 0
    for key in ("n_train", "n_heldout"):
        value = metrics.get(key)
        total += int(value) if isinstance(value, int | float) else 0
    return total


def _heldout_count(metrics: dict[str, object]) -> float:
    """The binomial count that matches the run's own 95 % interval (a ranking bootstrap: pairs
    of one ranking are not independent), else its held-out rankings; 0 when neither is known."""
    p, low, high = (
        metrics.get(k)
        for k in ("heldout_accuracy", "heldout_accuracy_low", "heldout_accuracy_high")
    )
    if all(isinstance(v, int | float) for v in (p, low, high)):
        se = (float(high) - float(low)) / (2 * _Z95)  # type: ignore[arg-type]
        q = min(max(float(p), 0.02), 0.98)  # type: ignore[arg-type]
        if se > 0:
            return q * (1 - q) / se**2
    n = metrics.get("n_heldout")
    return float(n) if isinstance(n, int | float) and n > 0 else 0.0


# Verdict curve


def _verdict(
    session: Session, project_id: int, comparisons: ComparisonArrays
) -> tuple[Plan, int | None, int | None]:
    """The verdict plan of the current version against its previous one (else of the newest
    version that has a previous one), with the two versions' numbers."""
    cross = comparisons.where(comparisons.winner_version != comparisons.loser_version)
    versions = ratings_repository.versions(session, project_id)
    rated = set(np.unique(np.concatenate([cross.winner_version, cross.loser_version])).tolist())
    previous = previous_versions(
        [VersionInfo(v.id, v.number, v.parent_id) for v in versions], rated
    )
    number = {v.id: v.number for v in versions}
    current = [v.id for v in versions if v.status == PolicyStatus.current and v.id in previous]
    candidates = current or sorted(previous, key=lambda v: number[v])[-1:]
    if not candidates:
        none = Plan(
            "verdict",
            None,
            None,
            None,
            len(np.unique(comparisons.ranking)),
            (),
            reason="No two policy versions have been compared yet.",
        )
        return none, None, None
    new = candidates[0]
    old = previous[new]
    key = (
        project_id, new, old, len(comparisons), int(comparisons.ranking.sum()),
        int(cross.winner_version.sum()), int(cross.tie.sum()),
    )  # fmt: skip
    if key not in _verdict_cache:
        if len(_verdict_cache) >= _CACHE_SIZE:
            _verdict_cache.pop(next(iter(_verdict_cache)))
        plan = _verdict_curve(comparisons, cross, new, old)
        _verdict_cache[key] = (plan, number[new], number[old])
    return _verdict_cache[key]


def _verdict_curve(
    comparisons: ComparisonArrays, cross: ComparisonArrays, new: int, old: int
) -> Plan:
    """Intervals of R_new − R_old on PREFIXES of the new version's rankings (all comparisons
    up to each cut, refitted as the leaderboard fits them), against the rankings made since the
    new version first met another version: the rankings that could have informed it."""
    cross_index = np.flatnonzero(comparisons.winner_version != comparisons.loser_version)
    involves = (cross.winner_version == new) | (cross.loser_version == new)
    positions = cross_index[involves]  # (m,) indices into `comparisons`, by id
    _, first = np.unique(comparisons.ranking[positions], return_index=True)
    starts = positions[np.sort(first)]  # (r,) each of its rankings' first comparison, by time
    start = int(positions[0])
    rankings: list[int] = []
    widths: list[float] = []
    full: tuple[float, float, float] | None = None
    for share in PREFIXES:
        cut = (
            len(comparisons)  # all of them: the leaderboard's own fit
            if share == 1.0
            else _cut(comparisons.ranking, starts[max(math.ceil(share * len(starts)) - 1, 0)])
        )
        mask = np.zeros(len(cross), dtype=bool)
        mask[: int(np.searchsorted(cross_index, cut))] = True
        part = cross.where(mask)
        fitted = fit_by_ranking(
            part.winner_version,
            part.loser_version,
            part.tie,
            part.ranking,
            bootstrap=BOOTSTRAP_ROUNDS if share == 1.0 else PREFIX_BOOTSTRAP,
        )
        try:
            interval = difference_interval(fitted, new, old)
        except (KeyError, ValueError):
            continue
        n = len(np.unique(comparisons.ranking[start:cut]))
        if rankings and n == rankings[-1]:
            rankings.pop()
            widths.pop()
        rankings.append(n)
        widths.append(interval[2] - interval[1])
        full = interval
    if full is None:
        return Plan(
            "verdict", None, None, None, 0, (), reason="The two versions have no interval yet."
        )
    plan = planner.verdict_plan(rankings, widths, *full, now=rankings[-1])
    per_version = rankings_per_item(cross.winner_version, cross.loser_version, cross.ranking)
    short = MIN_RANKINGS_FOR_VERDICT - min(per_version.get(new, 0), per_version.get(old, 0))
    if plan.estimate == 0 and short > 0:
        # Decided by the interval, but the leaderboard waits for this many rankings of each.
        plan = replace(plan, estimate=short, low=short, high=short)
    return plan


def _cut(ranking: np.ndarray, index: int) -> int:
    """One past the last comparison of the ranking at `index` (a ranking's comparisons are
    stored together, so its rows are consecutive in id order)."""
    same = np.flatnonzero(ranking[index:] != ranking[index])
    return int(index + same[0]) if len(same) else len(ranking)
