"""How far to trust a model judge: measured against people (docs/training-notes.md §Agreement).

Three figures per judge, each with a 95% interval and the count behind it:
- agreement with the human consensus on the tasks both ranked: the consensus of a task is a
  Bradley-Terry fit on its people's rankings (one person: their ranking itself); pairwise
  agreement pooled over the shared pairs (Wilson interval), Kendall's tau-b averaged over
  tasks (percentile bootstrap over tasks, fixed seed, so a page shows the same figure twice);
- position bias: the position checks (the task judged again with the cards reversed), the share
  of pairs whose verdict flipped (Wilson);
- gold: its pairs on gold tasks scored as people's are (app.gold.service, a tie counts half).

Pairs of one task are not independent, so the Wilson intervals are narrower than the truth;
they still say when a figure rests on too few pairs to act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

import numpy as np
from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.gold.service import gold_accuracy
from app.judges import repository
from app.models import AnnotatorExclusion, Judge, JudgeTaskLog, Ranking, RankingTask
from app.ratings.agreement import Groups, _scores_to_groups, kendall_tau, pairwise_agreement
from app.ratings.bradley_terry import consensus_scores

WILSON_Z = 1.959963984540054  # two-sided 95%
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A proportion or mean with its 95% interval; `value` None when nothing was measured."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    """What the interval rests on: pairs (agreement, flips, gold) or tasks (tau)."""


@dataclass(frozen=True)
class JudgeMeasures:
    judge_id: int
    n_tasks: int
    """Non-gold tasks ranked by the judge and by at least one included person."""
    n_pairs: int
    """Sample pairs of those tasks compared with the consensus."""
    agreement: Estimate
    """Share of the pairs on which the judge gives the consensus's outcome (n = pairs)."""
    kendall_tau: Estimate
    """Mean tau-b with the consensus per task (n = tasks with a defined tau)."""
    position_checks: int
    """Tasks judged a second time with the samples in reversed order."""
    flip_rate: Estimate
    """Share of the checked pairs whose verdict changed with the order (n = pairs)."""
    gold: Estimate
    """Share of its judged gold pairs it ordered as the known answer, ties half (n = pairs)."""


# Intervals


def wilson_interval(successes: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927): inside [0, 1] and not empty at 0 or
    n successes, unlike the normal approximation. `successes` may be fractional (half-ties);
    n = 0 says nothing: (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if p == 0.0 else max(0.0, min(p, centre - half))  # exact at the ends
    high = 1.0 if p == 1.0 else min(1.0, max(p, centre + half))
    return low, high


def bootstrap_mean_interval(
    values: Sequence[float], rounds: int = BOOTSTRAP_ROUNDS, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile interval of the mean by resampling `values` (one per task) with
    replacement; a fixed seed makes it repeatable. One value: that value, twice."""
    if not values:
        raise ValueError("no values to bootstrap")
    x = np.asarray(values, dtype=float)  # (T,)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)  # (rounds,)
    low, high = np.percentile(means, [2.5, 97.5])
    mean = float(x.mean())
    return min(float(low), mean), max(float(high), mean)


def proportion(successes: float, n: int) -> Estimate:
    if n <= 0:
        return Estimate(None, None, None, 0)
    low, high = wilson_interval(successes, n)
    return Estimate(successes / n, low, high, n)


# Agreement with people


@dataclass(frozen=True)
class _TaskFigure:
    agreeing: float
    pairs: int
    tau: float | None


def _consensus(rankings: Sequence[Groups]) -> Groups:
    """The people's consensus on one task. When they all gave the same ranking (one person,
    or people who agree) it is that ranking, as a fit on it keeps its order and ties, and no
    fit is needed (a fit per task took most of the time)."""
    first = [sorted(group) for group in rankings[0]]
    if all([sorted(group) for group in other] == first for other in rankings[1:]):
        return rankings[0]
    return _scores_to_groups(consensus_scores(list(rankings)))


def _shared_pairs(a: Groups, b: Groups) -> int:
    common = {s for g in a for s in g} & {s for g in b for s in g}
    return len(common) * (len(common) - 1) // 2


def task_figures(
    judge_rankings: Mapping[int, Groups],
    human_rankings: Mapping[int, Sequence[Groups]],
    *,
    with_tau: bool = True,
) -> list[_TaskFigure]:
    """Per task both ranked: agreeing pairs, shared pairs and tau of the judge's ranking
    against the people's consensus (tasks with fewer than two shared samples left out).
    Tau costs most of the time (scipy, ~1 ms a task); the floor check goes without."""
    out = []
    for task_id, groups in sorted(judge_rankings.items()):
        people = human_rankings.get(task_id)
        if not people:
            continue
        consensus = _consensus(people)
        share = pairwise_agreement(groups, consensus)
        if share is None:
            continue
        pairs = _shared_pairs(groups, consensus)
        tau = kendall_tau(groups, consensus) if with_tau else None
        out.append(_TaskFigure(round(share * pairs), pairs, tau))
    return out


def _rankings(session: Session, judge: Judge) -> tuple[dict[int, Groups], dict[int, list[Groups]]]:
    """({task: the judge's groups}, {task: the included people's groups}) on the non-gold
    tasks the judge ranked. People are rankings marked 'human': other judges never enter a
    judge's yardstick, whatever the project counts in its human figures."""
    usable = (
        Ranking.project_id == judge.project_id,
        Ranking.none_usable.is_(False),
        RankingTask.gold == false(),
    )
    rows = session.execute(
        select(Ranking.task_id, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(*usable, Ranking.user_id == judge.user_id)
    ).all()
    mine: dict[int, Groups] = {task: groups for task, groups in rows if groups}
    if not mine:
        return {}, {}
    excluded = select(AnnotatorExclusion.user_id).where(
        AnnotatorExclusion.project_id == judge.project_id
    )
    people: dict[int, list[Groups]] = {}
    rows = session.execute(
        select(Ranking.task_id, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(
            *usable,
            Ranking.source == "human",
            Ranking.task_id.in_(list(mine)),
            Ranking.user_id.not_in(excluded),
        )
        .order_by(Ranking.task_id, Ranking.user_id)
    ).all()
    for task_id, groups in rows:
        if groups:
            people.setdefault(task_id, []).append(groups)
    return mine, people


def agreement_with_people(
    session: Session, judge: Judge, *, with_tau: bool = True
) -> tuple[int, Estimate, Estimate]:
    """(tasks, pairwise agreement, mean tau) of the judge against the human consensus (tau
    unmeasured, n 0, without `with_tau`)."""
    figures = task_figures(*_rankings(session, judge), with_tau=with_tau)
    pairs = sum(f.pairs for f in figures)
    agreement = proportion(sum(f.agreeing for f in figures), pairs)
    taus = [f.tau for f in figures if f.tau is not None]
    tau = Estimate(None, None, None, 0)
    if taus:
        low, high = bootstrap_mean_interval(taus)
        tau = Estimate(fmean(taus), low, high, len(taus))
    return len(figures), agreement, tau


# Position bias and gold


def position_flips(session: Session, judge_id: int) -> tuple[int, Estimate]:
    """(checks, flip rate over the checked pairs) from the judge's position-check log."""
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(JudgeTaskLog.flipped_pairs), 0),
            func.coalesce(func.sum(JudgeTaskLog.total_pairs), 0),
        ).where(JudgeTaskLog.judge_id == judge_id, JudgeTaskLog.outcome == "position_check")
    ).one()
    checks, flipped, total = (int(x or 0) for x in row)
    return checks, proportion(flipped, total)


def gold_agreement(session: Session, judge: Judge) -> Estimate:
    pairs, correct = gold_accuracy(session, judge.project_id).get(judge.user_id, (0, 0.0))
    return proportion(correct, pairs)


# The figures


def judge_measures(session: Session, *, judge_id: int) -> JudgeMeasures:
    """Every figure of one judge (404 for an unknown judge)."""
    judge = repository.get_judge(session, judge_id)
    if judge is None:
        raise NotFound(f"No judge {judge_id}")
    return _measures(session, judge)


def _measures(session: Session, judge: Judge) -> JudgeMeasures:
    n_tasks, agreement, tau = agreement_with_people(session, judge)
    checks, flips = position_flips(session, judge.id)
    return JudgeMeasures(
        judge_id=judge.id,
        n_tasks=n_tasks,
        n_pairs=agreement.n,
        agreement=agreement,
        kendall_tau=tau,
        position_checks=checks,
        flip_rate=flips,
        gold=gold_agreement(session, judge),
    )


def measures_for_project(session: Session, project_id: int) -> dict[int, JudgeMeasures]:
    """{judge id: its figures} for the project's judges (the judges page)."""
    judges = repository.list_judges(session, project_id=project_id)
    return {judge.id: _measures(session, judge) for judge in judges}


__all__ = [
    "Estimate",
    "JudgeMeasures",
    "agreement_with_people",
    "bootstrap_mean_interval",
    "judge_measures",
    "measures_for_project",
    "wilson_interval",
]
