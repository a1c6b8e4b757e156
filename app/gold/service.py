"""Gold tasks: marking a task's known answer, and how annotators' rankings agree with it.

A gold task is served once to every annotator (app.annotation: at the project's `gold_rate`),
never completes, and its comparisons carry `gold`, so ratings, training snapshots and exports
leave them out. Marking or unmarking a task that already has rankings flips its comparisons'
flag and refits the ratings in the same transaction.

Scoring (`pair_score`), per stored comparison of a gold ranking:
- a known ordering: a pair the ordering puts in different groups is correct (1) when the
  annotator ordered it the same way, wrong (0) when reversed, and half (0.5) when they tied
  it; a pair the ordering ties is not judged;
- a known-bad sample: only pairs with that sample are judged: 1 when it loses, 0.5 for a tie,
  0 when it wins.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.gold import repository
from app.gold.schemas import GoldAnnotatorOut, GoldTaskOut
from app.models import Project, RankingTask, TaskStatus
from app.projects.service import require_project
from app.ratings import service as ratings
from app.ratings.bradley_terry import consensus_scores
from app.ratings.pairs import InvalidRanking, validate_ranking


class TaskCancelled(Conflict, code="task_cancelled"): ...


@dataclass(frozen=True)
class GoldAnswer:
    """A gold task's known answer: rank of each sample (0 best) or the bad sample."""

    rank: dict[int, int] | None
    bad_sample_id: int | None

    @classmethod
    def of(cls, task: RankingTask) -> GoldAnswer:
        rank = None
        if task.gold_groups is not None:
            rank = {int(s): i for i, group in enumerate(task.gold_groups) for s in group}
        return cls(rank=rank, bad_sample_id=task.gold_bad_sample_id)


def pair_score(answer: GoldAnswer, winner: int, loser: int, tie: bool) -> float | None:
    """1 correct, 0.5 tied, 0 wrong, None when the gold answer says nothing of this pair."""
    if answer.rank is not None:
        if winner not in answer.rank or loser not in answer.rank:
            return None
        if answer.rank[winner] == answer.rank[loser]:
            return None
        if tie:
            return 0.5
        return 1.0 if answer.rank[winner] < answer.rank[loser] else 0.0
    bad = answer.bad_sample_id
    if bad is None or bad not in (winner, loser):
        return None
    if tie:
        return 0.5
    return 1.0 if loser == bad else 0.0


# Marking


def _task_of_project(session: Session, *, project_id: int, task_id: int) -> RankingTask:
    require_project(session, project_id)
    task = repository.lock_task(session, task_id)
    if task is None or task.project_id != project_id:
        raise NotFound(f"No task {task_id} in project {project_id}", details={"field": "task_id"})
    return task


def mark_gold(
    session: Session,
    *,
    project_id: int,
    task_id: int,
    groups: Sequence[Sequence[int]] | None = None,
    bad_sample_id: int | None = None,
    now: datetime | None = None,
) -> RankingTask:
    """Give the task a known answer (an ordering of all its samples, or its worst sample).
    A complete task opens again (a gold task never completes); marking again replaces the
    answer. Its existing comparisons become gold and the ratings are refitted without them."""
    if (groups is None) == (bad_sample_id is None):
        raise InvalidInput(
            "Give either the known ordering (groups) or the known-bad sample, not both",
            details={"field": "groups"},
        )
    task = _task_of_project(session, project_id=project_id, task_id=task_id)
    if task.status == TaskStatus.cancelled:
        raise TaskCancelled(f"Task {task_id} is cancelled")
    sample_ids = [sample_id for sample_id, _ in repository.task_samples(session, task_id)]
    if groups is not None:
        try:
            validate_ranking(groups, sample_ids)
        except InvalidRanking as exc:
            raise InvalidInput(f"Bad ordering: {exc}", details={"field": "groups"}) from None
        if len(groups) < 2:
            raise InvalidInput(
                "The ordering ties every sample: it says nothing", details={"field": "groups"}
            )
    elif bad_sample_id not in sample_ids:
        raise InvalidInput(
            f"Sample {bad_sample_id} is not in task {task_id}",
            details={"field": "bad_sample_id"},
        )
    was_gold = task.gold
    task.gold = True
    task.gold_groups = [list(group) for group in groups] if groups is not None else None
    task.gold_bad_sample_id = bad_sample_id
    task.status = TaskStatus.open
    task.completed_at = None
    session.flush()
    if not was_gold and repository.set_comparisons_gold(session, task_id=task_id, gold=True):
        ratings.recompute(session, project_id=project_id, now=now)
    return task


def unmark_gold(
    session: Session, *, project_id: int, task_id: int, now: datetime | None = None
) -> RankingTask:
    """The task becomes an ordinary one again: complete if it has its required rankings,
    and its comparisons rejoin the ratings (refitted now) and training data."""
    now = now or utcnow()
    task = _task_of_project(session, project_id=project_id, task_id=task_id)
    if not task.gold:
        raise NotFound(f"Task {task_id} is not a gold task", details={"field": "task_id"})
    task.gold = False
    task.gold_groups = None
    task.gold_bad_sample_id = None
    if task.status == TaskStatus.open and task.annotations_done >= task.required_annotations:
        task.status = TaskStatus.complete
        task.completed_at = now
    session.flush()
    if repository.set_comparisons_gold(session, task_id=task_id, gold=False):
        ratings.recompute(session, project_id=project_id, now=now)
    return task


def consensus_groups(session: Session, *, task_id: int) -> list[list[int]]:
    """The task's samples in the consensus order of its rankings (a Bradley-Terry fit, as the
    leaderboard's consensus per prompt), best first; equal scores tie."""
    scores = consensus_scores(repository.task_rankings(session, task_id))
    sample_ids = [sample_id for sample_id, _ in repository.task_samples(session, task_id)]
    if not scores or set(scores) != set(sample_ids):
        raise InvalidInput(
            f"Task {task_id} has no ranking of all its samples to take a consensus from",
            details={"field": "task_id"},
        )
    by_score: dict[float, list[int]] = defaultdict(list)
    for sample_id in sorted(sample_ids):
        by_score[round(scores[sample_id], 9)].append(sample_id)
    return [by_score[score] for score in sorted(by_score, reverse=True)]


def mark_gold_from_consensus(
    session: Session, *, project_id: int, task_id: int, now: datetime | None = None
) -> RankingTask:
    """Mark an already ranked task gold with its annotators' consensus as the known order."""
    _task_of_project(session, project_id=project_id, task_id=task_id)
    groups = consensus_groups(session, task_id=task_id)
    return mark_gold(session, project_id=project_id, task_id=task_id, groups=groups, now=now)


def groups_from_ranks(sample_ids: Sequence[int], ranks: Sequence[str]) -> list[list[int]]:
    """The admin form's ranks (1 = best, equal numbers tie) as groups, best first."""
    if len(sample_ids) != len(ranks):
        raise InvalidInput("Give a rank for every sample", details={"field": "rank"})
    by_rank: dict[int, list[int]] = defaultdict(list)
    for sample_id, rank in zip(sample_ids, ranks, strict=True):
        if not rank.strip().isdigit():
            raise InvalidInput(
                f"Sample {sample_id}: the rank must be a whole number (1 = best)",
                details={"field": "rank"},
            )
        by_rank[int(rank)].append(sample_id)
    return [by_rank[r] for r in sorted(by_rank)]


# Reading


def _scores(
    session: Session, project_id: int, tasks: list[RankingTask]
) -> list[tuple[int, int, int, float]]:
    """(task id, ranking id, user id, score) of every judged pair of these gold tasks."""
    answers = {task.id: GoldAnswer.of(task) for task in tasks}
    out = []
    rows = repository.gold_comparisons(session, project_id, list(answers))
    for task_id, ranking_id, user_id, winner, loser, tie in rows:
        score = pair_score(answers[task_id], winner, loser, tie)
        if score is not None:
            out.append((task_id, ranking_id, user_id, score))
    return out


def gold_accuracy(session: Session, project_id: int) -> dict[int, tuple[int, float]]:
    """Per annotator: (judged pairs of gold tasks, correct pairs), a tie counting half."""
    tasks = repository.gold_tasks(session, project_id)
    out: dict[int, tuple[int, float]] = {}
    for _, _, user_id, score in _scores(session, project_id, tasks):
        pairs, correct = out.get(user_id, (0, 0.0))
        out[user_id] = (pairs + 1, correct + score)
    return out


def list_gold_tasks(
    session: Session, *, project_id: int, after_id: int | None = None, limit: int | None = None
) -> list[GoldTaskOut]:
    """The project's gold tasks by id, each with how its rankings agree with its answer."""
    require_project(session, project_id)
    tasks = repository.gold_tasks(session, project_id, after_id=after_id, limit=limit)
    answered = repository.ranking_counts(session, [task.id for task in tasks])
    pairs: dict[int, int] = defaultdict(int)
    correct: dict[int, float] = defaultdict(float)
    judged_rankings: dict[int, set[int]] = defaultdict(set)
    wrong_rankings: set[int] = set()
    for task_id, ranking_id, _, score in _scores(session, project_id, tasks):
        pairs[task_id] += 1
        correct[task_id] += score
        judged_rankings[task_id].add(ranking_id)
        if score < 1:
            wrong_rankings.add(ranking_id)
    return [
        GoldTaskOut(
            task_id=task.id,
            prompt_id=task.prompt_id,
            groups=task.gold_groups,
            bad_sample_id=task.gold_bad_sample_id,
            answered=answered.get(task.id, 0),
            agreed=len(judged_rankings[task.id] - wrong_rankings),
            pairs=pairs[task.id],
            pairs_correct=correct[task.id],
        )
        for task in tasks
    ]


def wilson(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (correct may be fractional: ties count half)."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def annotator_accuracy(session: Session, *, project_id: int) -> list[GoldAnnotatorOut]:
    """gold_accuracy per annotator with a 95% interval (pairs of one ranking are not
    independent, so the interval is narrower than the truth), lowest accuracy first. Judges are
    measured on their own page (app.judges.measurement); they are listed here only when the
    project counts them in its human figures."""
    accuracy = gold_accuracy(session, project_id)
    people = repository.people_among(session, project_id, list(accuracy))
    accuracy = {user_id: figures for user_id, figures in accuracy.items() if user_id in people}
    names = repository.usernames(session, list(accuracy))
    rows = []
    for user_id, (n, correct) in accuracy.items():
        low, high = wilson(correct, n)
        rows.append(
            GoldAnnotatorOut(
                user_id=user_id,
                username=names.get(user_id, str(user_id)),
                pairs=n,
                correct=correct,
                accuracy=correct / n,
                ci_low=low,
                ci_high=high,
            )
        )
    return sorted(rows, key=lambda row: (row.accuracy or 0.0, row.username))


@dataclass(frozen=True)
class GoldPage:
    project: Project
    tasks: list[GoldTaskOut]
    annotators: list[GoldAnnotatorOut]
    chosen_task: RankingTask | None
    """The task whose samples the admin looks at, to mark it."""
    chosen_samples: list[tuple[int, str]]
    recent: list[tuple[int, int]]
    """(task id, rankings) of recently ranked ordinary tasks, to mark from their consensus."""


def gold_page(session: Session, *, project_id: int, task_id: int | None = None) -> GoldPage:
    project = require_project(session, project_id)
    chosen, samples = None, []
    if task_id is not None:
        chosen = session.get(RankingTask, task_id)
        if chosen is None or chosen.project_id != project_id:
            raise NotFound(f"No task {task_id} in project {project_id}")
        samples = repository.task_samples(session, task_id)
    return GoldPage(
        project=project,
        tasks=list_gold_tasks(session, project_id=project_id),
        annotators=annotator_accuracy(session, project_id=project_id),
        chosen_task=chosen,
        chosen_samples=samples,
        recent=[
            (int(t), int(n))
            for t, n in repository.recently_ranked_tasks(session, project_id, limit=10)
        ],
    )


def mark_gold_out(
    session: Session,
    *,
    project_id: int,
    task_id: int,
    groups: Sequence[Sequence[int]] | None = None,
    bad_sample_id: int | None = None,
) -> GoldTaskOut:
    """mark_gold, answered as the list shows the task."""
    mark_gold(
        session, project_id=project_id, task_id=task_id, groups=groups, bad_sample_id=bad_sample_id
    )
    [out] = list_gold_tasks(session, project_id=project_id, after_id=task_id - 1, limit=1)
    return out
