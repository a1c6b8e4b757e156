"""Queries for projects, members, prompts and demonstrations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.accounts import repository as accounts_repository
from app.models import (
    Assignment,
    AssignmentState,
    Demonstration,
    PolicyKind,
    PolicyVersion,
    Project,
    ProjectMember,
    Prompt,
    Ranking,
    RankingTask,
    RoundState,
    Sample,
    TaskSample,
    TaskStatus,
    TrainingRound,
    User,
)
from app.ratings.repository import in_human_figures


def get_project(session: Session, project_id: int) -> Project | None:
    return session.get(Project, project_id)


def get_project_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def get_member(session: Session, project_id: int, user_id: int) -> ProjectMember | None:
    return session.get(ProjectMember, (project_id, user_id))


def existing_prompt_hashes(session: Session, project_id: int, hashes: Iterable[str]) -> set[str]:
    wanted = list(set(hashes))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(
            session.scalars(
                select(Prompt.content_hash).where(
                    Prompt.project_id == project_id, Prompt.content_hash.in_(chunk)
                )
            )
        )
    return found


def count_prompts(session: Session, project_id: int) -> int:
    return int(session.scalar(select(func.count()).where(Prompt.project_id == project_id)) or 0)


def lock_project(session: Session, project_id: int) -> Project | None:
    """The project row, locked until commit (PostgreSQL) so two imports into it queue.

    SQLite needs no lock: its writing transactions already run one at a time (BEGIN IMMEDIATE).
    """
    return session.scalar(select(Project).where(Project.id == project_id).with_for_update())


def prompt_ids_by_hash(session: Session, project_id: int, hashes: Iterable[str]) -> dict[str, int]:
    wanted = list(set(hashes))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(Prompt.content_hash, Prompt.id).where(
                Prompt.project_id == project_id,
                Prompt.content_hash.in_(wanted[start : start + 500]),
            )
        )
        found.update(rows.tuples().all())
    return found


def list_members(
    session: Session, project_id: int, *, search: str = "", limit: int | None = None
) -> list[tuple[ProjectMember, User]]:
    """By username; `search` as on the users page."""
    query = (
        select(ProjectMember, User)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id)
        .order_by(User.username)
    )
    if search:
        query = query.where(accounts_repository.user_matches(search))
    return [(member, user) for member, user in session.execute(query.limit(limit))]


def count_members(session: Session, project_id: int) -> int:
    query = select(func.count()).where(ProjectMember.project_id == project_id)
    return int(session.scalar(query) or 0)


def delete_member(session: Session, project_id: int, user_id: int) -> bool:
    result = session.execute(
        delete(ProjectMember).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Policy versions and samples


def external_versions(session: Session, project_id: int) -> dict[str, PolicyVersion]:
    rows = session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.kind == PolicyKind.external
        )
    )
    return {version.name: version for version in rows}


def max_version_number(session: Session, project_id: int) -> int:
    return int(
        session.scalar(
            select(func.max(PolicyVersion.number)).where(PolicyVersion.project_id == project_id)
        )
        or 0
    )


def samples_of(
    session: Session, *, version_ids: Iterable[int], prompt_ids: Iterable[int]
) -> list[Sample]:
    versions, prompts = list(set(version_ids)), list(set(prompt_ids))
    found: list[Sample] = []
    for start in range(0, len(prompts), 500):
        found.extend(
            session.scalars(
                select(Sample)
                .where(
                    Sample.policy_version_id.in_(versions),
                    Sample.prompt_id.in_(prompts[start : start + 500]),
                )
                .order_by(Sample.id)
            )
        )
    return found


def tasked_sample_ids(session: Session, sample_ids: Iterable[int]) -> set[int]:
    """The samples among these that some ranking task already shows."""
    wanted = list(set(sample_ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            session.scalars(
                select(TaskSample.sample_id)
                .where(TaskSample.sample_id.in_(wanted[start : start + 500]))
                .distinct()
            )
        )
    return found


# Progress


def task_counts(session: Session, project_id: int) -> dict[TaskStatus, int]:
    """Tasks by status, gold tasks left out (they stay open for ever and measure annotators)."""
    rows = session.execute(
        select(RankingTask.status, func.count())
        .where(RankingTask.project_id == project_id, RankingTask.gold.is_(False))
        .group_by(RankingTask.status)
    )
    return {TaskStatus(status): int(count) for status, count in rows}


def live_lease_counts(session: Session, project_id: int, now: datetime) -> tuple[int, int]:
    """(open tasks with a lease that has not expired, such leases)."""
    row = session.execute(
        select(func.count(func.distinct(Assignment.task_id)), func.count())
        .select_from(Assignment)
        .join(RankingTask, RankingTask.id == Assignment.task_id)
        .where(
            RankingTask.project_id == project_id,
            RankingTask.status == TaskStatus.open,
            Assignment.state == AssignmentState.leased,
            Assignment.expires_at > now,
        )
    ).one()
    return int(row[0]), int(row[1])


def annotation_totals(session: Session, project_id: int) -> tuple[int, int]:
    """(annotations done, annotations required) over the project's open and complete tasks,
    gold tasks left out."""
    row = session.execute(
        select(
            func.coalesce(func.sum(RankingTask.annotations_done), 0),
            func.coalesce(func.sum(RankingTask.required_annotations), 0),
        ).where(
            RankingTask.project_id == project_id,
            RankingTask.status != TaskStatus.cancelled,
            RankingTask.gold.is_(False),
        )
    ).one()
    return int(row[0]), int(row[1])


def rankings_per_annotator(session: Session, project_id: int) -> list[Row[Any]]:
    """username, display_name, rankings, none_usable, last_at per user who ranked here: people
    only (judges have their own progress), unless the project counts judges in its human
    figures."""
    return list(
        session.execute(
            select(
                User.username,
                User.display_name,
                func.count(Ranking.id).label("rankings"),
                func.coalesce(func.sum(case((Ranking.none_usable, 1), else_=0)), 0).label(
                    "none_usable"
                ),
                func.max(Ranking.created_at).label("last_at"),
            )
            .join(User, User.id == Ranking.user_id)
            .where(Ranking.project_id == project_id, in_human_figures(User.kind, project_id))
            .group_by(User.id, User.username, User.display_name)
            .order_by(func.count(Ranking.id).desc(), User.username)
        )
    )


def rankings_since_last_round(session: Session, project_id: int) -> int:
    """Rankings with an order, made after the newest round that was not cancelled or failed
    began (all of them before the first round): what a new round would add."""
    last = (
        select(func.max(TrainingRound.created_at))
        .where(
            TrainingRound.project_id == project_id,
            TrainingRound.state.not_in([RoundState.cancelled, RoundState.failed]),
        )
        .scalar_subquery()
    )
    return int(
        session.scalar(
            select(func.count()).where(
                Ranking.project_id == project_id,
                Ranking.none_usable.is_(False),
                or_(last.is_(None), Ranking.created_at > last),
            )
        )
        or 0
    )


def count_too_long_prompts(session: Session, project_id: int) -> int:
    """Active prompts marked too long for the model."""
    return int(
        session.scalar(
            select(func.count()).where(
                Prompt.project_id == project_id, Prompt.active, Prompt.too_long
            )
        )
        or 0
    )


def mark_too_long(session: Session, project_id: int, *, budget: int) -> None:
    """Mark the measured prompts too long when their count passes `budget`, unmark the others
    (prompts never measured keep their mark)."""
    session.execute(
        update(Prompt)
        .where(Prompt.project_id == project_id, Prompt.token_count.is_not(None))
        .values(too_long=Prompt.token_count > budget)
        .execution_options(synchronize_session="fetch")
    )


def clear_too_long(session: Session, project_id: int) -> None:
    session.execute(
        update(Prompt)
        .where(Prompt.project_id == project_id, Prompt.too_long)
        .values(too_long=False)
        .execution_options(synchronize_session="fetch")
    )


def count_active_prompts(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.count()).where(Prompt.project_id == project_id, Prompt.active))
        or 0
    )


def samples_per_version(session: Session, project_id: int) -> list[Row[Any]]:
    """Each policy version with its sample and prompt counts (zero for versions without any)."""
    return list(
        session.execute(
            select(
                PolicyVersion.number,
                PolicyVersion.name,
                PolicyVersion.kind,
                PolicyVersion.status,
                func.count(Sample.id).label("samples"),
                func.count(func.distinct(Sample.prompt_id)).label("prompts"),
            )
            .outerjoin(Sample, Sample.policy_version_id == PolicyVersion.id)
            .where(PolicyVersion.project_id == project_id)
            .group_by(
                PolicyVersion.id,
                PolicyVersion.number,
                PolicyVersion.name,
                PolicyVersion.kind,
                PolicyVersion.status,
            )
            .order_by(PolicyVersion.number)
        )
    )


def count_per_project(session: Session, column: Any, *where: Any) -> dict[int, int]:
    """{project_id: count of rows} for a table's project_id column, with optional filters."""
    rows = session.execute(select(column, func.count()).where(*where).group_by(column))
    return {int(project_id): int(count) for project_id, count in rows}


# Demonstrations


def existing_demonstration_hashes(
    session: Session, project_id: int, hashes: Iterable[str]
) -> set[str]:
    wanted = list(set(hashes))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            session.scalars(
                select(Demonstration.content_hash).where(
                    Demonstration.project_id == project_id,
                    Demonstration.content_hash.in_(wanted[start : start + 500]),
                )
            )
        )
    return found


def count_demonstrations(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.count()).where(Demonstration.project_id == project_id)) or 0
    )


def insert_demonstration_if_new(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING on (project_id, content_hash): the new row's id, or None
    when the project has it. A concurrent writer of the same row makes this wait, not fail,
    and no project lock is needed (submits must not queue on the project row)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Demonstration)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["project_id", "content_hash"])
        .returning(Demonstration.id)
    )
    return session.scalar(statement)
