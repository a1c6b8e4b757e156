"""Queries for the task queue, rankings and the ratings a submit touches.

Row locks use FOR NO KEY UPDATE (`key_share=True`): it serialises leasing and submitting on a
task without blocking the foreign-key checks of rows that merely reference it. SQLite ignores
locking clauses; there, every writing transaction is BEGIN IMMEDIATE and already serialised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.models import (
    Assignment,
    AssignmentState,
    Comparison,
    Project,
    ProjectMember,
    Prompt,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SampleRating,
    TaskSample,
    TaskStatus,
    User,
)
from app.ratings.elo import INITIAL

# Projects and membership


def member_projects(session: Session, user_id: int) -> list[Project]:
    return list(
        session.scalars(
            select(Project)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user_id)
            .order_by(Project.name)
        )
    )


def member_project(session: Session, *, user_id: int, project_id: int) -> Project | None:
    return session.scalar(
        select(Project)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.user_id == user_id, Project.id == project_id)
    )


def lock_user(session: Session, user_id: int) -> None:
    """One leasing transaction per annotator at a time (a double click gets one lease)."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


# Leases


def leases_of(session: Session, user_id: int) -> list[tuple[Assignment, int]]:
    """The user's leases on open tasks (expired ones too), with the task's project, oldest first."""
    rows = session.execute(
        select(Assignment, RankingTask.project_id)
        .join(RankingTask, RankingTask.id == Assignment.task_id)
        .where(
            Assignment.user_id == user_id,
            Assignment.state == AssignmentState.leased,
            RankingTask.status == TaskStatus.open,
        )
        .order_by(Assignment.id)
    )
    return [(assignment, project_id) for assignment, project_id in rows]


def _live_leases(now: datetime) -> Any:
    return (
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.task_id == RankingTask.id,
            Assignment.state == AssignmentState.leased,
            Assignment.expires_at > now,
        )
        .correlate(RankingTask)
        .scalar_subquery()
    )


def _done_by(user_id: int) -> Any:
    """The user ranked the task, or skipped it: either way it is not offered to them again."""
    ranked = exists().where(Ranking.task_id == RankingTask.id, Ranking.user_id == user_id)
    skipped = exists().where(
        Assignment.task_id == RankingTask.id,
        Assignment.user_id == user_id,
        Assignment.state == AssignmentState.skipped,
    )
    return ranked | skipped


def lock_candidate(
    session: Session, *, project_id: int, user_id: int, now: datetime, exclude: Sequence[int]
) -> int | None:
    """The oldest open task that seems to have a free slot for this user, locked; or None.

    SKIP LOCKED lets concurrent annotators take different tasks instead of queueing on one.
    The slot count here comes from the statement's snapshot: `slot_state` re-reads it.
    """
    stmt = (
        select(RankingTask.id)
        .where(
            RankingTask.project_id == project_id,
            RankingTask.status == TaskStatus.open,
            RankingTask.annotations_done + _live_leases(now) < RankingTask.required_annotations,
            ~_done_by(user_id),
        )
        .order_by(RankingTask.id)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
    )
    if exclude:
        stmt = stmt.where(RankingTask.id.not_in(list(exclude)))
    return session.scalar(stmt)


def slot_state(session: Session, *, task_id: int, user_id: int, now: datetime) -> Any:
    """A fresh read of a locked task: status, done, required, live and stale leases, done_by.

    On PostgreSQL (READ COMMITTED) a new statement sees every transaction that held the task's
    lock before us, which the locking statement's older snapshot may not.
    """
    stale = (
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.task_id == RankingTask.id,
            Assignment.state == AssignmentState.leased,
            Assignment.expires_at <= now,
        )
        .correlate(RankingTask)
        .scalar_subquery()
    )
    return session.execute(
        select(
            RankingTask.status,
            RankingTask.annotations_done,
            RankingTask.required_annotations,
            _live_leases(now).label("live"),
            stale.label("stale"),
            _done_by(user_id).label("done_by_user"),
        ).where(RankingTask.id == task_id)
    ).one()


def expire_stale_leases(session: Session, *, task_id: int, now: datetime) -> None:
    session.execute(
        update(Assignment)
        .where(
            Assignment.task_id == task_id,
            Assignment.state == AssignmentState.leased,
            Assignment.expires_at <= now,
        )
        .values(state=AssignmentState.expired, finished_at=now)
    )


def latest_assignment(session: Session, *, task_id: int, user_id: int) -> Assignment | None:
    return session.scalar(
        select(Assignment)
        .where(Assignment.task_id == task_id, Assignment.user_id == user_id)
        .order_by(Assignment.id.desc())
        .limit(1)
    )


# Tasks


def lock_task(session: Session, task_id: int) -> RankingTask | None:
    """Wait for the task's lock (a submit must not be skipped, unlike a lease candidate)."""
    return session.scalar(
        select(RankingTask)
        .where(RankingTask.id == task_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def task_samples(session: Session, task_id: int) -> list[tuple[int, int, str]]:
    """(sample id, policy version id, text) of the task's samples, by position."""
    rows = session.execute(
        select(Sample.id, Sample.policy_version_id, Sample.text)
        .join(TaskSample, TaskSample.sample_id == Sample.id)
        .where(TaskSample.task_id == task_id)
        .order_by(TaskSample.position)
    )
    return [(int(i), int(v), str(t)) for i, v, t in rows]


def task_view_rows(session: Session, task_id: int) -> list[Any]:
    """What the annotator sees, in one query: (project_id, prompt text, prompt messages,
    sample id, sample text) per sample, by position."""
    return list(
        session.execute(
            select(
                RankingTask.project_id,
                Prompt.text,
                Prompt.messages,
                Sample.id,
                Sample.text,
            )
            .join(Prompt, Prompt.id == RankingTask.prompt_id)
            .join(TaskSample, TaskSample.task_id == RankingTask.id)
            .join(Sample, Sample.id == TaskSample.sample_id)
            .where(RankingTask.id == task_id)
            .order_by(TaskSample.position)
        )
    )


# Rankings and what they write


def _insert_many(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """One INSERT … VALUES (…), (…) round trip for many rows, compiled once and cached.

    RETURNING is what makes SQLAlchemy batch an executemany this way ("insertmanyvalues");
    without it psycopg sends a statement per row, and `.values(rows)` recompiles every time.
    """
    session.execute(stmt.returning(literal_column("1")), rows)


def insert_comparisons(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        _insert_many(session, insert(Comparison), rows)


def _insert_ignoring_conflicts(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(model)
    _insert_many(session, stmt.on_conflict_do_nothing(), rows)


def insert_flags(session: Session, rows: list[dict[str, Any]]) -> None:
    """A sample the user flagged before (in another task) keeps its first flag."""
    if rows:
        _insert_ignoring_conflicts(session, SampleFlag, rows)


def lock_elo(session: Session, sample_ids: Iterable[int], now: datetime) -> dict[int, float]:
    """The samples' Elo, rows created when missing and locked in id order (no deadlocks when
    two tasks share a sample)."""
    ids = sorted(set(sample_ids))
    _insert_ignoring_conflicts(
        session,
        SampleRating,
        [{"sample_id": i, "elo": INITIAL, "elo_comparisons": 0, "updated_at": now} for i in ids],
    )
    rows = session.execute(
        select(SampleRating.sample_id, SampleRating.elo)
        .where(SampleRating.sample_id.in_(ids))
        .order_by(SampleRating.sample_id)
        .with_for_update(key_share=True)
    )
    return dict(rows.all())


def store_elo(
    session: Session, elo: dict[int, float], comparisons: dict[int, int], now: datetime
) -> None:
    """All of a ranking's samples in one UPDATE (CASE by id) rather than one per sample."""
    session.execute(
        update(SampleRating)
        .where(SampleRating.sample_id.in_(list(elo)))
        .values(
            elo=case(elo, value=SampleRating.sample_id),
            elo_comparisons=SampleRating.elo_comparisons
            + case(comparisons, value=SampleRating.sample_id, else_=0),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def ranking_counts(session: Session, *, user_id: int, since: datetime) -> tuple[int, int]:
    """(rankings since `since`, rankings in total) by the user; one index range scan."""
    row = session.execute(
        select(
            func.coalesce(func.sum(case((Ranking.created_at >= since, 1), else_=0)), 0),
            func.count(),
        ).where(Ranking.user_id == user_id)
    ).one()
    return int(row[0]), int(row[1])
