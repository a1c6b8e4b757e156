"""Projects and their inputs: prompts (plain or multi-turn) and demonstrations for SFT."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("samples_per_prompt BETWEEN 4 AND 9", name="samples_per_prompt_range"),
        CheckConstraint("annotations_per_task >= 1", name="annotations_per_task_positive"),
        CheckConstraint("lease_minutes >= 1", name="lease_minutes_positive"),
        CheckConstraint("temperature > 0", name="temperature_positive"),
        CheckConstraint("top_p > 0 AND top_p <= 1", name="top_p_range"),
        CheckConstraint("max_new_tokens >= 1", name="max_new_tokens_positive"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 0.5", name="gold_rate_range"),
        CheckConstraint("uniform_share >= 0 AND uniform_share <= 1", name="uniform_share_range"),
        CheckConstraint("selection IN ('uniform', 'active')", name="selection_kind"),
        CheckConstraint("reliability_min_tasks >= 0", name="reliability_min_tasks_non_negative"),
        CheckConstraint(
            "suggestion_control_share >= 0 AND suggestion_control_share <= 1",
            name="suggestion_control_share_range",
        ),
        CheckConstraint("judge_weight >= 0", name="judge_weight_non_negative"),
        CheckConstraint(
            "generation_backend IN ('hf', 'openai', 'vllm')", name="generation_backend_kind"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    base_model: Mapped[str] = mapped_column(String(500))
    trust_remote_code: Mapped[bool] = mapped_column(default=False)
    samples_per_prompt: Mapped[int] = mapped_column(default=4)
    annotations_per_task: Mapped[int] = mapped_column(default=1)
    lease_minutes: Mapped[int] = mapped_column(default=15)
    temperature: Mapped[float] = mapped_column(default=0.9)
    top_p: Mapped[float] = mapped_column(default=0.95)
    max_new_tokens: Mapped[int] = mapped_column(default=64)
    newest_version_share: Mapped[float] = mapped_column(
        default=0.5, doc="Share of a task's samples from the newest version when mixing two."
    )
    min_open_tasks: Mapped[int] = mapped_column(
        default=10, doc="Below this many open tasks, more prompts are sampled automatically."
    )
    stop_strings: Mapped[list[Any] | None] = mapped_column(
        doc="Generation stops at these texts (the end of the assistant's turn); None derives "
        "them from the tokenizer's chat template."
    )
    long_prompts: Mapped[str] = mapped_column(
        String(16),
        default="truncate",
        server_default="truncate",
        doc="A prompt longer than the context minus the new tokens: 'truncate' keeps its end "
        "(a conversation loses its oldest turns first, never the last user turn; what still "
        "does not fit is left-truncated with a marker); 'skip' marks it too long and never "
        "samples it.",
    )
    guidelines: Mapped[str] = mapped_column(Text, default="")
    reliability_weighting: Mapped[bool] = mapped_column(
        default=True,
        server_default=true(),
        doc="Weight each comparison by its annotator's fitted reliability in ratings and "
        "reward models (annotators with fewer than `reliability_min_tasks` shared tasks "
        "weigh 1).",
    )
    reliability_min_tasks: Mapped[int] = mapped_column(default=10, server_default="10")
    gold_rate: Mapped[float] = mapped_column(
        default=0.1,
        server_default="0.1",
        doc="Share of leases that go to a gold task the annotator has not done, when any exist.",
    )
    selection: Mapped[str] = mapped_column(
        String(16),
        default="uniform",
        server_default="uniform",
        doc="How new tasks pick prompts and versions: 'uniform' or 'active' (where a ranking "
        "is worth most, with `uniform_share` of tasks still drawn uniformly).",
    )
    uniform_share: Mapped[float] = mapped_column(default=0.2, server_default="0.2")
    position_correction: Mapped[bool] = mapped_column(
        default=True,
        server_default=true(),
        doc="Fit a first-shown-card term in the ratings when the position bias is significant.",
    )
    judge_suggestions: Mapped[bool] = mapped_column(
        default=False,
        server_default=false(),
        doc="Show annotators a judge's order as a marked suggestion (anchors people: off).",
    )
    suggestion_control_share: Mapped[float] = mapped_column(
        default=0.25,
        server_default="0.25",
        doc="Share of leases shown without the suggestion, to measure its anchoring.",
    )
    judge_weight: Mapped[float] = mapped_column(
        default=0.0,
        server_default="0",
        doc="Weight of judge (AI) comparisons in reward-model and DPO training data (0: none).",
    )
    judge_only: Mapped[bool] = mapped_column(
        default=False,
        server_default=false(),
        doc="Pure RLAIF: rounds train on judge rankings only.",
    )
    judges_in_human_figures: Mapped[bool] = mapped_column(
        default=False,
        server_default=false(),
        doc="Count judges in agreement figures and the leaderboard (an admin's choice).",
    )
    generation_backend: Mapped[str] = mapped_column(
        String(16),
        default="hf",
        server_default="hf",
        doc="Who writes samples, gate and rollout text: 'hf' (generate in the worker), "
        "'openai' (a completions server), 'vllm' (in-process, CUDA only).",
    )
    generation_base_url: Mapped[str | None] = mapped_column(String(500))
    generation_model: Mapped[str | None] = mapped_column(
        String(200), doc="The served model's name for 'openai' (None: the base model's)."
    )
    generation_api_key_env: Mapped[str | None] = mapped_column(
        String(128), doc="Environment variable holding the server's key; never stored."
    )
    ratings_dirty_since: Mapped[datetime | None] = mapped_column(
        doc="Set by a submit, cleared by the ratings job: the debounce marker."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(Base):
    """A prompt, deduplicated per project by a hash of its content.

    `messages` is set for a multi-turn conversation ([{"role", "content"}, ...]); `text` is then
    a flattened rendering for lists and search.
    """

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    messages: Mapped[list[Any] | None]
    source: Mapped[str] = mapped_column(String(32), default="plain")
    active: Mapped[bool] = mapped_column(default=True)
    token_count: Mapped[int | None] = mapped_column(
        doc="Length in the project's tokenizer, measured at import or sampling (None: not yet)."
    )
    too_long: Mapped[bool] = mapped_column(
        default=False,
        server_default=false(),
        doc="Does not fit the context minus the new tokens; skipped when long_prompts='skip'.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_conversation(self) -> bool:
        return self.messages is not None


class Demonstration(Base):
    """A prompt → good response pair for SFT (imported, or written by an annotator)."""

    __tablename__ = "demonstrations"
    __table_args__ = (UniqueConstraint("project_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    response: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="plain")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
