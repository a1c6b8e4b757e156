"""Long-running work: training rounds (a state machine of stages) and sampling jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.models._columns import enum_column
from app.models.enums import JobState, RoundState

ROUND_TYPE_LENGTH = 40
"""The longest round type name the rounds table stores (`app.rounds.registry` refuses longer)."""

_ACTIVE_ROUND = "state NOT IN ('done', 'rejected', 'failed', 'cancelled', 'needs_more_data')"


class TrainingRound(Base):
    """queued → reward_model → policy → evaluating → sampling → done (or rejected/failed/cancelled).

    The partial unique index lets the database itself refuse a second active round per project.
    """

    __tablename__ = "training_rounds"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        Index(
            "uq_training_rounds_one_active",
            "project_id",
            unique=True,
            sqlite_where=text(_ACTIVE_ROUND),
            postgresql_where=text(_ACTIVE_ROUND),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int]
    type: Mapped[str] = mapped_column(
        String(ROUND_TYPE_LENGTH),
        doc="A registered round type's name (`app.rounds.registry`), checked when it starts.",
    )
    state: Mapped[RoundState] = mapped_column(
        enum_column(RoundState, "round_state"), default=RoundState.queued
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="stage, step, total, eta_seconds, latest metrics."
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="Per stage: lists of per-epoch / per-step metrics for charts."
    )
    error: Mapped[str | None] = mapped_column(Text, doc="One line: what failed and what to do.")
    error_detail: Mapped[str | None] = mapped_column(
        Text, doc="The traceback, without server paths, for admins who expand it."
    )
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    heartbeat_at: Mapped[datetime | None]
    base_policy_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="SET NULL", use_alter=True)
    )
    snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("comparison_snapshots.id", ondelete="SET NULL")
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class SamplingJob(Base):
    """Generate samples for a policy version over a set of prompts; committed batch by batch."""

    __tablename__ = "sampling_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_rounds.id", ondelete="SET NULL")
    )
    state: Mapped[JobState] = mapped_column(
        enum_column(JobState, "job_state"), default=JobState.queued
    )
    prompt_ids: Mapped[list[Any]] = mapped_column(default=list)
    prompts_done: Mapped[int] = mapped_column(default=0)
    prompts_total: Mapped[int] = mapped_column(default=0)
    seed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, doc="One line: what failed and what to do.")
    error_detail: Mapped[str | None] = mapped_column(
        Text, doc="The traceback, without server paths, for admins who expand it."
    )
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class WorkerHeartbeat(Base):
    """Workers report here so the admin pages can show which are alive and what they serve."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    queues: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
