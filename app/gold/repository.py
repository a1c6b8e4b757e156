"""Queries for gold tasks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Comparison, Ranking, RankingTask, Sample, TaskSample, User
from app.ratings.repository import in_human_figures


def lock_task(session: Session, task_id: int) -> RankingTask | None:
    """The task, locked FOR UPDATE: a gold lease holds FOR KEY SHARE, so marking or unmarking
    waits for leases being handed out, and those re-check `gold` after it."""
    return session.scalar(
        select(RankingTask)
        .where(RankingTask.id == task_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def task_samples(session: Session, task_id: int) -> list[tuple[int, str]]:
    """(sample id, text) of the task's samples, by position."""
    rows = session.execute(
        select(Sample.id, Sample.text)
        .join(TaskSample, TaskSample.sample_id == Sample.id)
        .where(TaskSample.task_id == task_id)
        .order_by(TaskSample.position)
    )
    return [(int(i), str(t)) for i, t in rows]


def set_comparisons_gold(session: Session, *, task_id: int, gold: bool) -> int:
    """Mark the task's stored comparisons gold (or not); how many there are."""
    result = session.execute(
        update(Comparison)
        .where(Comparison.task_id == task_id)
        .values(gold=gold)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def gold_tasks(
    session: Session, project_id: int, *, after_id: int | None = None, limit: int | None = None
) -> list[RankingTask]:
    query = (
        select(RankingTask)
        .where(RankingTask.project_id == project_id, RankingTask.gold.is_(True))
        .order_by(RankingTask.id)
    )
    if after_id is not None:
        query = query.where(RankingTask.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def ranking_counts(session: Session, task_ids: list[int]) -> dict[int, int]:
    if not task_ids:
        return {}
    rows = session.execute(
        select(Ranking.task_id, func.count())
        .where(Ranking.task_id.in_(task_ids))
        .group_by(Ranking.task_id)
    )
    return {int(task_id): int(n) for task_id, n in rows}


def gold_comparisons(
    session: Session, project_id: int, task_ids: list[int] | None = None
) -> list[Any]:
    """(task id, ranking id, user id, winner, loser, tie) of the comparisons of the project's
    current gold tasks."""
    query = (
        select(
            Comparison.task_id,
            Comparison.ranking_id,
            Comparison.user_id,
            Comparison.winner_id,
            Comparison.loser_id,
            Comparison.tie,
        )
        .join(RankingTask, RankingTask.id == Comparison.task_id)
        .where(
            Comparison.project_id == project_id,
            Comparison.gold.is_(True),
            RankingTask.gold.is_(True),
        )
        .order_by(Comparison.id)
    )
    if task_ids is not None:
        query = query.where(Comparison.task_id.in_(task_ids))
    return list(session.execute(query))


def usernames(session: Session, user_ids: list[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(user_ids)))
    return {int(i): str(name) for i, name in rows}


def people_among(session: Session, project_id: int, user_ids: list[int]) -> set[int]:
    """The users among `user_ids` that count as people here: humans, and judges (users of kind
    'model') only when the project counts judges in its human figures."""
    if not user_ids:
        return set()
    rows = session.scalars(
        select(User.id).where(User.id.in_(user_ids), in_human_figures(User.kind, project_id))
    )
    return {int(i) for i in rows}


def recently_ranked_tasks(session: Session, project_id: int, *, limit: int) -> list[Any]:
    """(task id, rankings) of the ordinary tasks ranked most recently, newest first."""
    return list(
        session.execute(
            select(Ranking.task_id, func.count())
            .join(RankingTask, RankingTask.id == Ranking.task_id)
            .where(
                RankingTask.project_id == project_id,
                RankingTask.gold.is_(False),
                Ranking.none_usable.is_(False),
            )
            .group_by(Ranking.task_id)
            .order_by(func.max(Ranking.id).desc())
            .limit(limit)
        )
    )


def task_rankings(session: Session, task_id: int) -> list[list[list[int]]]:
    """The groups of the task's rankings that rank something."""
    rows = session.scalars(
        select(Ranking.groups).where(Ranking.task_id == task_id, Ranking.none_usable.is_(False))
    )
    return [groups for groups in rows if groups]
