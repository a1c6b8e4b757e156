"""Keyset-paginated lists for the API (one row more than asked, to know a next page exists)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import PolicyVersion, Project, TrainingRound

Row = TypeVar("Row", TrainingRound, PolicyVersion)
"""Rows that belong to a project."""


def projects(session: Session, *, after_id: int | None, limit: int) -> list[Project]:
    query = select(Project).order_by(Project.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(Project.id > after_id)
    return list(session.scalars(query))


def newest_first(
    session: Session, model: type[Row], *, project_id: int, before_id: int | None, limit: int
) -> list[Row]:
    """A project's rows, newest first, older than `before_id` when given."""
    query = (
        select(model)
        .where(model.project_id == project_id)
        .order_by(model.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        query = query.where(model.id < before_id)
    return list(session.scalars(query))


def versions_of_rounds(session: Session, round_ids: list[int]) -> dict[int, int]:
    """Round id → id of the policy version it registered."""
    if not round_ids:
        return {}
    rows = session.execute(
        select(PolicyVersion.round_id, PolicyVersion.id).where(
            PolicyVersion.round_id.in_(round_ids)
        )
    )
    return {rid: vid for rid, vid in rows if rid is not None}


def project_versions(session: Session, project_id: int) -> dict[int, PolicyVersion]:
    return {
        v.id: v
        for v in session.scalars(
            select(PolicyVersion).where(PolicyVersion.project_id == project_id)
        )
    }
