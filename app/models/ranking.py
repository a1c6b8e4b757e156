"""Rankings, the pairwise comparisons derived from them, and immutable comparison snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Ranking(Base):
    """An annotator's ordering of a task's samples.

    `groups` is a list of lists of sample ids, best first; ids in one inner list are tied.
    A "none usable" answer stores no groups and yields no comparisons.
    """

    __tablename__ = "rankings"
    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        CheckConstraint("source IN ('human', 'ai')", name="source_kind"),
        CheckConstraint("suggestion IN ('shown', 'hidden')", name="suggestion_kind"),
        Index("ix_rankings_user_created", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int] = mapped_column(ForeignKey("ranking_tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL")
    )
    groups: Mapped[list[Any]] = mapped_column(default=list)
    display_order: Mapped[list[Any]] = mapped_column(default=list)
    none_usable: Mapped[bool] = mapped_column(default=False)
    none_usable_reason: Mapped[str | None] = mapped_column(String(1000))
    time_spent_ms: Mapped[int | None]
    source: Mapped[str] = mapped_column(
        String(8), default="human", server_default="human", doc="'human' or 'ai' (a judge's)."
    )
    judge_id: Mapped[int | None] = mapped_column(ForeignKey("judges.id", ondelete="SET NULL"))
    judge_prompt_version: Mapped[int | None]
    suggestion: Mapped[str | None] = mapped_column(
        String(8),
        doc="A judge's order was 'shown' to the annotator, or 'hidden' (the control share); "
        "None: no suggestion existed.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comparison(Base):
    """One pair from a ranking. For a tie, winner/loser are just the two samples (lower id first).

    Policy versions and the annotator are copied in so ratings and exports need no joins.
    """

    __tablename__ = "comparisons"
    __table_args__ = (
        UniqueConstraint("ranking_id", "winner_id", "loser_id"),
        CheckConstraint("winner_id <> loser_id", name="distinct_samples"),
        CheckConstraint("source IN ('human', 'ai')", name="source_kind"),
        Index("ix_comparisons_project_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ranking_id: Mapped[int] = mapped_column(
        ForeignKey("rankings.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int] = mapped_column(ForeignKey("ranking_tasks.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    winner_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    loser_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    winner_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    loser_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    tie: Mapped[bool] = mapped_column(default=False)
    gold: Mapped[bool] = mapped_column(
        default=False,
        server_default=false(),
        doc="From a gold task (copied in, updated when a task is marked): measures annotators, "
        "never trains or rates versions.",
    )
    winner_position: Mapped[int | None] = mapped_column(
        doc="1-based place of the winner's card as shown to the annotator (None: not recorded)."
    )
    loser_position: Mapped[int | None]
    source: Mapped[str] = mapped_column(
        String(8),
        default="human",
        server_default="human",
        doc="Copied from the ranking: 'ai' comparisons stay out of human figures, default "
        "exports and training unless asked for.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComparisonSnapshot(Base):
    """A named, immutable set of comparisons: what a reward model or a DPO round trained on."""

    __tablename__ = "comparison_snapshots"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    comparison_count: Mapped[int] = mapped_column(default=0)
    criteria: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="What was left out (excluded annotators, flagged samples, ties)."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotComparison(Base):
    __tablename__ = "snapshot_comparisons"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("comparison_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weight: Mapped[float] = mapped_column(
        default=1.0,
        server_default="1",
        doc="The annotator's reliability weight when the snapshot was taken (1: unweighted).",
    )
