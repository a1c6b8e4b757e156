"""Queries for judges and what they did (the queue itself is app/annotation/repository.py)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Judge, JudgeTaskLog, Ranking


def get_judge(session: Session, judge_id: int) -> Judge | None:
    return session.get(Judge, judge_id)


def lock_judge(session: Session, judge_id: int) -> Judge | None:
    """The judge row, locked: a pause and an edit do not interleave."""
    return session.scalar(
        select(Judge)
        .where(Judge.id == judge_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def list_judges(session: Session, *, project_id: int) -> list[Judge]:
    return list(
        session.scalars(select(Judge).where(Judge.project_id == project_id).order_by(Judge.id))
    )


def judge_named(session: Session, *, project_id: int, name: str) -> Judge | None:
    return session.scalar(
        select(Judge).where(Judge.project_id == project_id, func.lower(Judge.name) == name.lower())
    )


def active_judge_ids(session: Session, *, project_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Judge.id).where(Judge.project_id == project_id, Judge.state == "active")
        )
    )


def add_log(session: Session, log: JudgeTaskLog) -> None:
    session.add(log)
    session.flush()


def outcome_counts(session: Session, *, judge_ids: list[int]) -> dict[tuple[int, str], int]:
    """(judge id, outcome) -> number of log rows."""
    if not judge_ids:
        return {}
    rows = session.execute(
        select(JudgeTaskLog.judge_id, JudgeTaskLog.outcome, func.count())
        .where(JudgeTaskLog.judge_id.in_(judge_ids))
        .group_by(JudgeTaskLog.judge_id, JudgeTaskLog.outcome)
    )
    return {(int(j), str(o)): int(n) for j, o, n in rows}


def last_skip_reason(session: Session, *, judge_id: int) -> str | None:
    return session.scalar(
        select(JudgeTaskLog.reason)
        .where(JudgeTaskLog.judge_id == judge_id, JudgeTaskLog.outcome == "skipped")
        .order_by(JudgeTaskLog.id.desc())
        .limit(1)
    )


def judge_ranking(session: Session, *, task_id: int, user_id: int) -> Ranking | None:
    return session.scalar(
        select(Ranking).where(Ranking.task_id == task_id, Ranking.user_id == user_id)
    )
