"""Versions of the policy and of the reward model, with their lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.models._columns import enum_column
from app.models.enums import PolicyKind, PolicyStatus


class PolicyVersion(Base):
    """One version of a project's policy; at most one per project is `current`."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        Index(
            "uq_policy_versions_one_current",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'current'"),
            postgresql_where=text("status = 'current'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int]
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[PolicyKind] = mapped_column(enum_column(PolicyKind, "policy_kind"))
    status: Mapped[PolicyStatus] = mapped_column(
        enum_column(PolicyStatus, "policy_status"), default=PolicyStatus.candidate
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="SET NULL")
    )
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_rounds.id", ondelete="SET NULL")
    )
    reward_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("reward_model_versions.id", ondelete="SET NULL")
    )
    snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("comparison_snapshots.id", ondelete="SET NULL")
    )
    base_model: Mapped[str | None] = mapped_column(
        String(500), doc="Model the adapter applies to (hub id or path); None for external."
    )
    artifact_uri: Mapped[str | None] = mapped_column(
        String(1000), doc="Adapter location in the artifact store; None for the base model."
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    human_verdict: Mapped[str | None] = mapped_column(
        String(20),
        doc="What annotators' rankings say of this version against its parent once the "
        "interval of the rating difference resolves: 'better', 'worse' (flagged, with a roll "
        "back offered) or None while not distinguishable.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RewardModelVersion(Base):
    __tablename__ = "reward_model_versions"
    __table_args__ = (UniqueConstraint("project_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int]
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_rounds.id", ondelete="SET NULL")
    )
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("comparison_snapshots.id"))
    base_model: Mapped[str] = mapped_column(String(500))
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    norm_mean: Mapped[float] = mapped_column(default=0.0)
    norm_std: Mapped[float] = mapped_column(default=1.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
