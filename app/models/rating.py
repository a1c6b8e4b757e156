"""Latest fitted ratings per sample and per policy version (Elo online, Bradley-Terry batch)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class SampleRating(Base):
    """Elo is updated in the submit transaction (a task's samples only); BT by the ratings job."""

    __tablename__ = "sample_ratings"

    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True
    )
    elo: Mapped[float] = mapped_column(default=1000.0)
    elo_comparisons: Mapped[int] = mapped_column(default=0)
    bt_rating: Mapped[float | None]
    bt_lower: Mapped[float | None]
    bt_upper: Mapped[float | None]
    bt_comparisons: Mapped[int] = mapped_column(default=0)
    bt_fitted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PolicyRating(Base):
    """Recomputed in the background from all comparisons (one hot row per version otherwise)."""

    __tablename__ = "policy_ratings"

    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE"), primary_key=True
    )
    elo: Mapped[float] = mapped_column(default=1000.0)
    bt_rating: Mapped[float | None]
    bt_lower: Mapped[float | None]
    bt_upper: Mapped[float | None]
    comparisons: Mapped[int] = mapped_column(default=0)
    win_rate_vs_previous: Mapped[float | None]
    verdict: Mapped[str | None]
    fitted_at: Mapped[datetime] = mapped_column(default=utcnow)
