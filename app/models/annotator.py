"""What the project knows about its annotators' work: exclusions and fitted reliability.

Both live apart from the membership row: an excluded annotator can be removed from the project
(their rankings stay, and stay excluded), and a reliability fitted from past rankings outlives
a membership too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

FLAG_REVERSED = "reversed"
FLAG_CHANCE = "chance"


class AnnotatorExclusion(Base):
    """An admin's decision that this person's rankings leave ratings and training data."""

    __tablename__ = "annotator_exclusions"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str | None] = mapped_column(String(500))
    excluded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotatorReliability(Base):
    """The Crowd-BT fit of one annotator, refreshed by the ratings job.

    `reliability` is the probability that the annotator orders a pair as the consensus does
    (0.5: chance; below: reversed), with an interval; `weight` is what their comparisons count
    for in ratings and reward models when the project weights by reliability.
    """

    __tablename__ = "annotator_reliability"
    __table_args__ = (
        CheckConstraint("reliability >= 0 AND reliability <= 1", name="reliability_range"),
        CheckConstraint("weight >= 0", name="weight_non_negative"),
        CheckConstraint("flag IN ('reversed', 'chance')", name="flag_kind"),
    )

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    reliability: Mapped[float]
    lower: Mapped[float]
    upper: Mapped[float]
    comparisons: Mapped[int] = mapped_column(default=0)
    shared_tasks: Mapped[int] = mapped_column(default=0)
    gold_answered: Mapped[int] = mapped_column(default=0)
    gold_correct: Mapped[int] = mapped_column(default=0)
    weight: Mapped[float] = mapped_column(default=1.0)
    flag: Mapped[str | None] = mapped_column(String(16))
    evidence: Mapped[str | None] = mapped_column(String(500))
    fitted_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["FLAG_CHANCE", "FLAG_REVERSED", "AnnotatorExclusion", "AnnotatorReliability"]
