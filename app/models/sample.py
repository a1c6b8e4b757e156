"""Samples a policy version (or an outside model) wrote for a prompt, and flags on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


def text_key(text: str) -> str:
    """What makes two samples the same answer (`is_duplicate`, `repeats_other_version`): case
    and runs of whitespace aside, so "Yes." and " yes. " are one text to an annotator."""
    return " ".join(text.split()).casefold()


class Sample(Base):
    """`ordinal` numbers a version's samples of one prompt, which makes sampling idempotent."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("policy_version_id", "prompt_id", "ordinal"),
        Index("ix_samples_prompt_version", "prompt_id", "policy_version_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    ordinal: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    generation_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch_seed: Mapped[int | None] = mapped_column(BigInteger)
    batch_position: Mapped[int | None]
    sampling_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("sampling_jobs.id", ondelete="SET NULL")
    )
    finished: Mapped[bool] = mapped_column(default=True, doc="Generation ended with EOS.")
    is_empty: Mapped[bool] = mapped_column(default=False)
    is_duplicate: Mapped[bool] = mapped_column(default=False)
    repeats_other_version: Mapped[bool] = mapped_column(
        default=False,
        doc="Word for word a sample of another version on the same prompt: ranking the two "
        "apart says nothing, so ratings and the reward model skip such pairs.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SampleFlag(Base):
    """An annotator marks a sample harmful; flagged samples stay out of training by default."""

    __tablename__ = "sample_flags"
    __table_args__ = (UniqueConstraint("sample_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="harmful")
    reason: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
