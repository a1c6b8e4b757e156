"""Form and API shapes for projects. Values stay text here; the service converts and checks them,
so a bad value gets a readable message ("Samples per prompt must be between 4 and 9")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ProjectForm(BaseModel):
    """The project settings form (create and edit); absent fields are left unchanged."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    base_model: str | None = None
    description: str | None = None
    guidelines: str | None = None
    samples_per_prompt: str | None = None
    annotations_per_task: str | None = None
    lease_minutes: str | None = None
    temperature: str | None = None
    top_p: str | None = None
    max_new_tokens: str | None = None
    newest_version_share: str | None = None
    min_open_tasks: str | None = None
    long_prompts: str | None = None
    """"truncate" or "skip" (service.LONG_PROMPTS)."""
    reliability_weighting: str | None = None
    """"true"/"false" from a select (absent: unchanged, unlike a checkbox)."""
    reliability_min_tasks: str | None = None
    gold_rate: str | None = None
    selection: str | None = None
    """"uniform" or "active" (service.SELECTION)."""
    uniform_share: str | None = None
    position_correction: str | None = None
    judges_in_human_figures: str | None = None
    """"true"/"false": model judges count in agreement, reliability and the leaderboard."""
    judge_suggestions: str | None = None
    """"true"/"false": annotators see a judge's order as a marked suggestion."""
    suggestion_control_share: str | None = None
    judge_weight: str | None = None
    judge_only: str | None = None
    """"true"/"false": rounds train on judge rankings only (pure RLAIF)."""
    generation_backend: str | None = None
    """"hf", "openai" or "vllm" (app/projects/generation.BACKENDS)."""
    generation_base_url: str = ""
    generation_model: str = ""
    generation_api_key_env: str = ""
    """The three texts above: blank clears them (absent means blank, as for stop strings)."""
    stop_strings: str = ""
    """One per line (\\n for a line break). Blank derives them from the chat template;
    the form parser reads a blank field as absent, so absent means blank."""
    trust_remote_code: bool = False
    """A checkbox: unchecked boxes are not sent, so absent means off."""

    def settings(self) -> dict[str, Any]:
        """The fields apply_settings takes (everything but name and base model)."""
        return self.model_dump(exclude_none=True, exclude={"name", "base_model"})
