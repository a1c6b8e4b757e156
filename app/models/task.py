"""Ranking tasks (K samples of one prompt), the samples they show, and leases on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from app.models._columns import enum_column
from app.models.enums import AssignmentState, TaskStatus


class RankingTask(Base):
    """K samples of one prompt to rank.

    A gold task has a known answer (`gold_groups`, an ordering of its samples, or
    `gold_bad_sample_id`, a sample known to be worst); it is served to every annotator once,
    looks like any other task, and its rankings only measure annotators: they never enter
    training data or version ratings. `selection_reason` says why the task was made
    ('uniform', 'uncertainty', 'undecided').
    """

    __tablename__ = "ranking_tasks"
    __table_args__ = (
        Index("ix_ranking_tasks_project_status", "project_id", "status", "id"),
        CheckConstraint(
            "selection_reason IN ('uniform', 'uncertainty', 'undecided')",
            name="selection_reason_kind",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    required_annotations: Mapped[int]
    annotations_done: Mapped[int] = mapped_column(default=0)
    status: Mapped[TaskStatus] = mapped_column(
        enum_column(TaskStatus, "task_status"), default=TaskStatus.open
    )
    sampling_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("sampling_jobs.id", ondelete="SET NULL")
    )
    gold: Mapped[bool] = mapped_column(default=False, server_default=false())
    gold_groups: Mapped[list[Any] | None]
    gold_bad_sample_id: Mapped[int | None] = mapped_column(
        ForeignKey("samples.id", ondelete="SET NULL")
    )
    selection_reason: Mapped[str] = mapped_column(
        String(16), default="uniform", server_default="uniform"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]

    samples: Mapped[list[TaskSample]] = relationship(
        lazy="raise", order_by="TaskSample.position", cascade="all, delete-orphan"
    )


class TaskSample(Base):
    """The database keeps a sample at most once per task."""

    __tablename__ = "task_samples"
    __table_args__ = (UniqueConstraint("task_id", "position"),)

    task_id: Mapped[int] = mapped_column(
        ForeignKey("ranking_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]


class Assignment(Base):
    """A lease of a task to an annotator; at most one open lease per (task, annotator)."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index(
            "uq_assignments_one_open_lease",
            "task_id",
            "user_id",
            unique=True,
            sqlite_where=text("state = 'leased'"),
            postgresql_where=text("state = 'leased'"),
        ),
        Index("ix_assignments_user_state", "user_id", "state"),
        Index("ix_assignments_task_state", "task_id", "state"),
        CheckConstraint("suggestion IN ('shown', 'hidden')", name="suggestion_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("ranking_tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[AssignmentState] = mapped_column(
        enum_column(AssignmentState, "assignment_state"), default=AssignmentState.leased
    )
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    suggestion: Mapped[str | None] = mapped_column(
        String(8),
        doc="Decided at lease time when a judge's order exists and suggestions are on: "
        "'shown' or 'hidden' (the control share), so the page and the submit agree.",
    )
