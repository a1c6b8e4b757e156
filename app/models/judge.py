"""Model judges (RLAIF): annotators of kind "model" that rank tasks through the same queue.

A judge owns a `users` row of kind "model" (no password that can log in), so its rankings,
leases and comparisons are ordinary rows marked `source='ai'`; the judge row holds how it
ranks (backend, prompt, method) and how it is run (overlap, limits, the floors under which it
is paused and its rankings left out of training). API keys are never stored: `api_key_env`
names the environment variable the judging worker reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Double, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

JUDGE_BACKENDS = ("hf", "openai", "simulated")
JUDGE_METHODS = ("listwise", "pairwise", "logprob")
JUDGE_OVERLAPS = ("all", "unreached")
JUDGE_STATES = ("active", "paused")
JUDGE_OUTCOMES = ("ranked", "skipped", "position_check")


class Judge(Base):
    """How one model judge ranks, and how it works a project's queue."""

    __tablename__ = "judges"
    __table_args__ = (
        CheckConstraint("backend IN ('hf', 'openai', 'simulated')", name="backend_kind"),
        CheckConstraint("method IN ('listwise', 'pairwise', 'logprob')", name="method_kind"),
        CheckConstraint("overlap IN ('all', 'unreached')", name="overlap_kind"),
        CheckConstraint("state IN ('active', 'paused')", name="state_kind"),
        CheckConstraint("share > 0 AND share <= 1", name="share_range"),
        CheckConstraint(
            "position_check_share >= 0 AND position_check_share <= 1",
            name="position_check_share_range",
        ),
        CheckConstraint("concurrency >= 1", name="concurrency_positive"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("timeout_s > 0", name="timeout_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"),
        unique=True,
        doc="The judge's own users row (kind 'model'): its rankings and leases are keyed by it.",
    )
    name: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(
        String(16), doc="'hf' (a local causal LM), 'openai' (chat completions), 'simulated'."
    )
    model: Mapped[str] = mapped_column(
        String(500), doc="Hub id or directory ('hf'), the served model's name ('openai')."
    )
    base_url: Mapped[str | None] = mapped_column(String(500))
    api_key_env: Mapped[str | None] = mapped_column(
        String(128), doc="Name of the environment variable holding the key; the key is not stored."
    )
    method: Mapped[str] = mapped_column(String(16), default="listwise")
    prompt_template: Mapped[str] = mapped_column(Text, default="")
    principles: Mapped[list[Any]] = mapped_column(default=list)
    prompt_version: Mapped[int] = mapped_column(
        default=1, doc="Bumped whenever the template or the principles change."
    )
    overlap: Mapped[str] = mapped_column(
        String(16),
        default="all",
        doc="'all': judge every open task; 'unreached': only tasks no person has ranked.",
    )
    share: Mapped[float] = mapped_column(default=1.0, doc="Share of eligible tasks it judges.")
    position_check_share: Mapped[float] = mapped_column(
        default=0.1, doc="Share of its tasks judged again with the samples in reversed order."
    )
    concurrency: Mapped[int] = mapped_column(default=1)
    requests_per_minute: Mapped[int | None]
    timeout_s: Mapped[float] = mapped_column(default=60.0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    agreement_floor: Mapped[float | None] = mapped_column(
        default=None,
        doc="Absolute floor: paused when its pairwise agreement with the human consensus falls "
        "below this (after `floor_min_pairs` shared pairs); None (the default): not used.",
    )
    relative_floor: Mapped[float | None] = mapped_column(
        # evaluates_none: an explicit None (no relative floor) is stored as NULL; the ORM would
        # otherwise leave it out of the INSERT and the default would apply.
        Double().evaluates_none(),
        default=0.5,
        doc="Relative floor: paused when its reliability relative to a typical person (judge-"
        "person beside person-person agreement, chance-corrected) is significantly below this "
        "(95% upper bound); None: not used. app/judges/measurement.py `floor_check`.",
    )
    floor_min_pairs: Mapped[int] = mapped_column(default=30)
    flag_harm: Mapped[bool] = mapped_column(
        default=False, doc="Also suggest harmful-sample flags (never final flags)."
    )
    options: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="Backend extras: generation settings, the simulated judge's spec."
    )
    state: Mapped[str] = mapped_column(String(16), default="active")
    paused_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JudgeTaskLog(Base):
    """What a judge did with one task: ranked it, skipped it (with why), or a position check.

    A position check ranks the task again with the samples in reversed order; `flipped_pairs`
    of `total_pairs` changed verdict. `elapsed_ms` feeds the throughput figures.
    """

    __tablename__ = "judge_task_log"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('ranked', 'skipped', 'position_check')", name="outcome_kind"
        ),
        Index("ix_judge_task_log_judge_task", "judge_id", "task_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    judge_id: Mapped[int] = mapped_column(ForeignKey("judges.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("ranking_tasks.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=1)
    reason: Mapped[str | None] = mapped_column(String(1000))
    flipped_pairs: Mapped[int | None]
    total_pairs: Mapped[int | None]
    elapsed_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "JUDGE_BACKENDS",
    "JUDGE_METHODS",
    "JUDGE_OUTCOMES",
    "JUDGE_OVERLAPS",
    "JUDGE_STATES",
    "Judge",
    "JudgeTaskLog",
]
