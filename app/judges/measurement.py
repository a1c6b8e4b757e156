"""How far to trust a model judge: measured against people (docs/training-notes.md §Agreement).

Three figures per judge, each with a 95% interval and the count behind it:
- agreement with the human consensus on the tasks both ranked: the consensus of a task is a
  Bradley-Terry fit on its people's rankings (one person: their ranking itself); pairwise
  agreement pooled over the shared pairs (Wilson interval), Kendall's tau-b averaged over
  tasks (percentile bootstrap over tasks, fixed seed, so a page shows the same figure twice);
- position bias: the position checks (the task judged again with the cards reversed), the share
  of pairs whose verdict flipped (Wilson);
- gold: its pairs on gold tasks scored as people's are (app.gold.service, a tie counts half);
- reliability relative to people: the judge against each person (judge-person agreement) set
  beside people against each other (person-person), chance-corrected (`relative_to_people`).

Pairs of one task are not independent, so the Wilson intervals are narrower than the truth;
they still say when a figure rests on too few pairs to act on.

The floor check (`floor_check`) is kept per judge with the data it was measured on, and is
measured again only when that data changed: the judging job checks every judge of the
project every 20 rankings, and each snapshot checks them again (~1.5 s per 5000 tasks).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import numpy as np
from sqlalchemy import false, func, select, true
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
class RelativeMeasure:
    """The judge against individual people, beside people against each other.

    Pairs where either ranking ties the two samples are left out. Under independent errors
    judge-person agreement is a_j a_p + (1-a_j)(1-a_p) and person-person a_p^2 + (1-a_p)^2
    (a: agreement with the true preference), so the chance-corrected ratio
    r = (A_jp - 0.5) / (A_pp - 0.5) = (2a_j - 1) / (2a_p - 1): 1 is as reliable as a person.
    """

    judge_person: Estimate
    """Share of (judge, person) pairs on shared tasks ordered alike (n = those pairs)."""
    person_person: Estimate
    """Share of (person, person) pairs on the project's tasks ordered alike (n = pairs)."""
    ratio: Estimate
    """r with its 95% percentile interval, tasks resampled (n = judge-person pairs); value
    None when undefined (`undefined`)."""
    n_tasks: int
    """Tasks with a judge-person or a person-person pair."""
    undefined: str | None = None
    """Why r is not defined: no pair with people yet, or people agree with each other no
    better than chance (A_pp - 0.5 not significantly above 0)."""


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
    relative: RelativeMeasure
    """How reliable the judge is relative to a typical person (the relative floor's figure)."""


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


# Relative to people: the judge against each person, people against each other


def _strict_pairs(a: Groups, b: Groups) -> tuple[int, int]:
    """(pairs ordered alike, pairs) over the samples both rank, leaving out a pair either
    ranking ties: a tie says nothing about which answer is better."""
    pos_a = {s: r for r, group in enumerate(a) for s in group}
    pos_b = {s: r for r, group in enumerate(b) for s in group}
    common = sorted(pos_a.keys() & pos_b.keys())
    same = total = 0
    for i, x in enumerate(common):
        for y in common[i + 1 :]:
            da, db = pos_a[x] - pos_a[y], pos_b[x] - pos_b[y]
            if da and db:
                total += 1
                same += (da > 0) == (db > 0)
    return same, total


def _people_by_task(session: Session, project_id: int) -> dict[int, list[Groups]]:
    """{task: the included people's groups} on the project's non-gold tasks (rankings marked
    'human', annotators not excluded)."""
    excluded = select(AnnotatorExclusion.user_id).where(AnnotatorExclusion.project_id == project_id)
    rows = session.execute(
        select(Ranking.task_id, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(
            Ranking.project_id == project_id,
            Ranking.none_usable.is_(False),
            RankingTask.gold == false(),
            Ranking.source == "human",
            Ranking.user_id.not_in(excluded),
        )
        .order_by(Ranking.task_id, Ranking.user_id)
    ).all()
    people: dict[int, list[Groups]] = {}
    for task_id, groups in rows:
        if groups:
            people.setdefault(task_id, []).append(groups)
    return people


def _judge_by_task(session: Session, judge: Judge) -> dict[int, Groups]:
    rows = session.execute(
        select(Ranking.task_id, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(
            Ranking.project_id == judge.project_id,
            Ranking.none_usable.is_(False),
            RankingTask.gold == false(),
            Ranking.user_id == judge.user_id,
        )
    ).all()
    return {task: groups for task, groups in rows if groups}


def _ratio(jp: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """r per row of (agreeing, pairs) sums; +inf where people's agreement is at or below
    chance or the judge shares no pair (nothing says the judge is worse), so such resamples
    never pull the upper bound down."""
    a_jp = np.divide(jp[:, 0], jp[:, 1], out=np.full(len(jp), np.nan), where=jp[:, 1] > 0)
    a_pp = np.divide(pp[:, 0], pp[:, 1], out=np.full(len(pp), np.nan), where=pp[:, 1] > 0)
    defined = (a_pp > 0.5) & ~np.isnan(a_jp)
    return np.where(
        defined, (np.nan_to_num(a_jp) - 0.5) / np.where(defined, a_pp - 0.5, 1.0), np.inf
    )


def relative_figures(
    judge_rankings: Mapping[int, Groups],
    human_rankings: Mapping[int, Sequence[Groups]],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> RelativeMeasure:
    """The `RelativeMeasure` of a judge's rankings against the people's, by task. Intervals:
    percentile bootstrap over tasks (a task's pairs are not independent), resampling each task
    with its judge-person and person-person pairs together; the agreements' intervals are the
    wider of that and Wilson's over pairs."""
    counts = []  # (task, [jp agreeing, jp pairs, pp agreeing, pp pairs])
    for task_id, people in sorted(human_rankings.items()):
        row = [0, 0, 0, 0]
        mine = judge_rankings.get(task_id)
        if mine is not None:
            for groups in people:
                same, total = _strict_pairs(mine, groups)
                row[0] += same
                row[1] += total
        for i, first in enumerate(people):
            for second in people[i + 1 :]:
                same, total = _strict_pairs(first, second)
                row[2] += same
                row[3] += total
        if row[1] or row[3]:
            counts.append(row)
    x = np.asarray(counts, dtype=float).reshape(-1, 4)  # (T, 4)
    totals = x.sum(axis=0)  # (4,)
    boot = np.zeros((0, 4))
    if len(x):
        rng = np.random.default_rng(seed)
        # In chunks of rounds: a project's thousands of tasks times 1000 resamples at once
        # would hold gigabytes (the judging job checks the floor after every batch).
        boot = np.concatenate(
            [
                x[rng.integers(0, len(x), size=(min(64, rounds - start), len(x)))].sum(axis=1)
                for start in range(0, rounds, 64)
            ]
        )  # (rounds, 4)

    def agreement(col: int) -> Estimate:
        n = int(totals[col + 1])
        if n == 0:
            return Estimate(None, None, None, 0)
        value = float(totals[col] / n)
        w_low, w_high = wilson_interval(float(totals[col]), n)
        shares = boot[:, col] / np.maximum(boot[:, col + 1], 1)
        shares = shares[boot[:, col + 1] > 0]
        b_low, b_high = np.percentile(shares, [2.5, 97.5]) if len(shares) else (w_low, w_high)
        low = min(w_low, float(b_low), value)
        return Estimate(value, low, max(w_high, float(b_high), value), n)

    jp, pp = agreement(0), agreement(2)
    undefined = None
    if jp.n == 0:
        undefined = "no pair ranked by both the judge and a person yet"
    elif pp.n == 0:
        undefined = "no two people ranked the same task yet"
    elif pp.low is None or pp.low <= 0.5:
        undefined = (
            f"people agree with each other no better than chance (person–person {pp.value:.2f},"
            f" 95% CI {pp.low:.2f}–{pp.high:.2f}, {pp.n} pairs)"
        )
    if undefined is not None:
        ratio = Estimate(None, None, None, jp.n)
    else:
        assert jp.value is not None
        assert pp.value is not None
        value = (jp.value - 0.5) / (pp.value - 0.5)
        rs = _ratio(boot[:, 0:2], boot[:, 2:4])  # (rounds,)
        low, high = (float(q) for q in np.quantile(rs, [0.025, 0.975], method="inverted_cdf"))
        # An upper end past every finite resample is unbounded: None (JSON has no infinity).
        top = max(high, value) if math.isfinite(high) else None
        ratio = Estimate(value, min(low, value), top, jp.n)
    return RelativeMeasure(jp, pp, ratio, len(x), undefined)


def relative_to_people(session: Session, judge: Judge) -> RelativeMeasure:
    """The judge's `RelativeMeasure` on the project's non-gold tasks."""
    return relative_figures(
        _judge_by_task(session, judge), _people_by_task(session, judge.project_id)
    )


# The floors


@dataclass(frozen=True)
class FloorCheck:
    """A judge against its floors: whether its rankings may be used (`passes`), and whether
    it falls below one (`below`: the reasons, with the figures, that pause it)."""

    established: bool
    """At least `floor_min_pairs` pairs shared with people (judge-person, ties left out; the
    consensus pairs when only the absolute floor is set)."""
    below: tuple[str, ...]
    """Each floor it is below: relative (95% upper bound under it) or absolute (agreement
    with the consensus under it)."""
    unmeasured: str | None
    """Why it is not measured well enough to pass: too few pairs shared with people."""
    summary: str
    """The figures in a line, e.g. for a snapshot's criteria."""

    @property
    def passes(self) -> bool:
        return self.established and not self.below and self.unmeasured is None


def relative_reason(relative: RelativeMeasure, floor: float) -> str:
    """E.g. 'relative to people 0.21 (95% CI 0.05–0.38; judge–person 0.53, person–person
    0.56, 212 pairs) is below the floor 0.50'."""
    return f"{_relative_figures(relative)} is below the floor {floor:.2f}"


def _relative_figures(relative: RelativeMeasure) -> str:
    r, jp, pp = relative.ratio, relative.judge_person, relative.person_person
    if r.value is None or jp.value is None or pp.value is None:
        return f"relative to people undefined ({relative.undefined})"
    high = f"{r.high:.2f}" if r.high is not None else "∞"
    return (
        f"relative to people {r.value:.2f} (95% CI {r.low:.2f}–{high}; judge–person "
        f"{jp.value:.2f}, person–person {pp.value:.2f}, {jp.n} pairs)"
    )


def floor_reason(agreement: Estimate, floor: float) -> str:
    """E.g. 'agreement with people 0.54 (95% CI 0.47–0.61, 212 pairs) is below the floor
    0.60'."""
    return (
        f"agreement with people {agreement.value:.2f} (95% CI {agreement.low:.2f}–"
        f"{agreement.high:.2f}, {agreement.n} pairs) is below the floor {floor:.2f}"
    )


def floor_check(session: Session, judge: Judge) -> FloorCheck:
    """The judge against its relative floor (paused when r is significantly below it: the 95%
    upper bound under the floor; never on an undefined r) and its absolute floor (the pooled
    agreement with the consensus under it), each once `floor_min_pairs` pairs are shared.
    Measured again only when what it reads changed (`floor_inputs`)."""
    inputs = floor_inputs(session, judge)
    with _floor_lock:
        cached = _floor_checks.get(judge.id)
    if cached is not None and cached[0] == inputs:
        return cached[1]
    check = _measure_floor(session, judge)
    with _floor_lock:
        _floor_checks[judge.id] = (inputs, check)
        _floor_checks.move_to_end(judge.id)
        while len(_floor_checks) > FLOOR_CHECKS_KEPT:
            _floor_checks.popitem(last=False)
    return check


FLOOR_CHECKS_KEPT = 1024
"""Judges whose last floor check this process keeps (a few hundred bytes each)."""
_floor_checks: OrderedDict[int, tuple[tuple[Any, ...], FloorCheck]] = OrderedDict()
_floor_lock = threading.Lock()  # the judging job checks from its worker threads


def floor_inputs(session: Session, judge: Judge) -> tuple[Any, ...]:
    """What a floor check reads, in four small queries: the judge's floors, (count, last id,
    last time) of its rankings and of people's in the project, the gold tasks, the excluded
    annotators. Rankings are inserted or deleted, never edited, so those three figures change
    whenever a side's rankings do. The database and the judge's creation time are in it too:
    another database (or a rolled-back transaction) can reuse a judge's id."""

    def rankings(*where: Any) -> tuple[Any, ...]:
        row = session.execute(
            select(func.count(), func.max(Ranking.id), func.max(Ranking.created_at)).where(
                Ranking.project_id == judge.project_id, *where
            )
        ).one()
        return tuple(row)

    gold = session.scalars(
        select(RankingTask.id)
        .where(RankingTask.project_id == judge.project_id, RankingTask.gold == true())
        .order_by(RankingTask.id)
    )
    excluded = session.scalars(
        select(AnnotatorExclusion.user_id)
        .where(AnnotatorExclusion.project_id == judge.project_id)
        .order_by(AnnotatorExclusion.user_id)
    )
    return (
        str(session.get_bind().engine.url),
        judge.user_id,
        judge.created_at,
        judge.relative_floor,
        judge.agreement_floor,
        judge.floor_min_pairs,
        rankings(Ranking.user_id == judge.user_id),
        rankings(Ranking.source == "human"),
        tuple(gold),
        tuple(excluded),
    )


def _measure_floor(session: Session, judge: Judge) -> FloorCheck:
    relative = relative_to_people(session, judge)
    agreement = None
    if judge.agreement_floor is not None:
        _, agreement, _ = agreement_with_people(session, judge, with_tau=False)
    absolute_only = judge.relative_floor is None and agreement is not None
    shared = agreement.n if absolute_only and agreement is not None else relative.judge_person.n
    established = shared >= judge.floor_min_pairs
    below: list[str] = []
    figures = [_relative_figures(relative)]
    if agreement is not None and agreement.value is not None:
        figures.append(
            f"agreement with people {agreement.value:.2f} ({agreement.n} consensus pairs)"
        )
    # An undefined r (people agree at chance) fails no floor: it says nothing either way.
    unmeasured = None
    if not established:
        unmeasured = f"{shared} of {judge.floor_min_pairs} pairs shared with people"
    if established and judge.relative_floor is not None:
        high = relative.ratio.high
        if relative.ratio.value is not None and high is not None and high < judge.relative_floor:
            below.append(relative_reason(relative, judge.relative_floor))
    if established and agreement is not None and judge.agreement_floor is not None:
        if agreement.value is not None and agreement.value < judge.agreement_floor:
            below.append(floor_reason(agreement, judge.agreement_floor))
    return FloorCheck(established, tuple(below), unmeasured, "; ".join(figures))


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
        relative=relative_to_people(session, judge),
    )


def measures_for_project(session: Session, project_id: int) -> dict[int, JudgeMeasures]:
    """{judge id: its figures} for the project's judges (the judges page)."""
    judges = repository.list_judges(session, project_id=project_id)
    return {judge.id: _measures(session, judge) for judge in judges}


__all__ = [
    "Estimate",
    "FloorCheck",
    "JudgeMeasures",
    "RelativeMeasure",
    "agreement_with_people",
    "bootstrap_mean_interval",
    "floor_check",
    "floor_inputs",
    "floor_reason",
    "judge_measures",
    "measures_for_project",
    "relative_figures",
    "relative_reason",
    "relative_to_people",
    "wilson_interval",
]
