"""What the judge pages and API take and return.

A judge's key is never part of it: `api_key_env` names the environment variable the judging
worker reads, and a value that looks like a key itself is refused (422) so it is never stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["hf", "openai", "simulated"]
Method = Literal["listwise", "pairwise", "logprob"]
Overlap = Literal["all", "unreached"]

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Shapes of key values people paste by mistake: OpenAI/Anthropic style prefixes, bearer
# tokens, Hugging Face tokens, long random-looking strings.
_KEY_LIKE = re.compile(r"^(sk-|sk_|pk-|hf_|gsk_|xai-|[Bb]earer\s)")
MAX_PRINCIPLES = 50
DEFAULT_AGREEMENT_FLOOR: float | None = None
"""The absolute floor (a share of pairs agreeing with the human consensus) is off by default:
when people agree little with each other, every judge measures low against them and a fixed
share pauses good and bad judges alike (bench/rlaif.py)."""
DEFAULT_RELATIVE_FLOOR = 0.5
"""Paused when significantly worth less than half a typical person (app.judges.measurement)."""


def _looks_like_key(value: str) -> bool:
    if _KEY_LIKE.match(value):
        return True
    has_lower = any(c.islower() for c in value)
    has_digit = any(c.isdigit() for c in value)
    return len(value) >= 24 and has_lower and has_digit and " " not in value


def check_api_key_env(value: str | None) -> str | None:
    """The name of an environment variable, or None; never a key itself. Not stripped: the
    API takes exactly what its schema says (the page's form strips its boxes)."""
    if value is None:
        return None
    if _looks_like_key(value):
        raise ValueError(
            "api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), not "
            "the key: the key is never stored"
        )
    if len(value) > 128 or not ENV_NAME.match(value):
        raise ValueError(
            "api_key_env must be an environment variable name: capitals, digits and _ "
            "(e.g. OPENAI_API_KEY)"
        )
    return value


def check_base_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; name them in api_key_env")
    return value.rstrip("/")


def check_principles(value: list[str]) -> list[str]:
    cleaned = [line.strip() for line in value if line.strip()]
    if len(cleaned) > MAX_PRINCIPLES:
        raise ValueError(f"At most {MAX_PRINCIPLES} principles")
    if any(len(line) > 1000 for line in cleaned):
        raise ValueError("A principle is at most 1000 characters")
    return cleaned


class _JudgeFields(BaseModel):
    """Fields shared by create and update (update: every field optional)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("api_key_env", mode="before", check_fields=False)
    @classmethod
    def _api_key_env(cls, value: Any) -> Any:
        return check_api_key_env(value) if isinstance(value, str) or value is None else value

    @field_validator("base_url", mode="before", check_fields=False)
    @classmethod
    def _base_url(cls, value: Any) -> Any:
        return check_base_url(value) if isinstance(value, str) or value is None else value

    @field_validator("principles", check_fields=False)
    @classmethod
    def _principles(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_principles(value)

    @field_validator("name", "model", check_fields=False)
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class JudgeCreate(_JudgeFields):
    name: str = Field(min_length=1, max_length=64, description="Shown wherever it ranked.")
    backend: Backend = Field(
        description="'hf': a local causal LM (hub id or path); 'openai': an OpenAI-compatible "
        "chat-completions endpoint (vLLM, TGI, llama.cpp, hosted); 'simulated': for tests and "
        "benchmarks."
    )
    model: str = Field(min_length=1, max_length=500, description="Hub id, path or served name.")
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    api_key_env: str | None = Field(
        default=None,
        max_length=128,
        pattern=ENV_NAME.pattern,
        description="NAME of the environment variable holding the endpoint's key.",
        examples=["OPENAI_API_KEY"],
    )
    method: Method = "listwise"
    prompt_template: str = Field(default="", max_length=20000, description="'': the default.")
    principles: list[str] = Field(default_factory=list)
    overlap: Overlap = Field(
        default="all", description="'all' open tasks, or only those no person has reached."
    )
    share: float = Field(default=1.0, gt=0, le=1)
    position_check_share: float = Field(default=0.1, ge=0, le=1)
    concurrency: int = Field(default=1, ge=1, le=64)
    requests_per_minute: int | None = Field(default=None, ge=1, le=100000)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_attempts: int = Field(default=3, ge=1, le=10)
    agreement_floor: float | None = Field(
        default=DEFAULT_AGREEMENT_FLOOR,
        ge=0,
        le=1,
        description="Absolute floor on agreement with the human consensus; null: not used.",
    )
    relative_floor: float | None = Field(
        default=DEFAULT_RELATIVE_FLOOR,
        ge=0,
        le=2,
        description="Floor on reliability relative to a typical person (1: as good as one); "
        "paused when its 95% upper bound is below; null: not used.",
    )
    floor_min_pairs: int = Field(default=30, ge=1, le=1000000)
    flag_harm: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _endpoint(self) -> JudgeCreate:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("An 'openai' judge needs a base_url")
        if self.method == "logprob" and self.backend == "openai":
            raise ValueError("Scoring by log-probabilities needs a local ('hf') model")
        return self


class JudgeUpdate(_JudgeFields):
    """Only the fields sent change; a changed template or principles bump prompt_version."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    backend: Backend | None = None
    model: str | None = Field(default=None, min_length=1, max_length=500)
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, max_length=128, pattern=ENV_NAME.pattern)
    method: Method | None = None
    prompt_template: str | None = Field(default=None, max_length=20000)
    principles: list[str] | None = None
    overlap: Overlap | None = None
    share: float | None = Field(default=None, gt=0, le=1)
    position_check_share: float | None = Field(default=None, ge=0, le=1)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    requests_per_minute: int | None = Field(default=None, ge=1, le=100000)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    agreement_floor: float | None = Field(default=None, ge=0, le=1)
    relative_floor: float | None = Field(default=None, ge=0, le=2)
    floor_min_pairs: int | None = Field(default=None, ge=1, le=1000000)
    flag_harm: bool | None = None
    options: dict[str, Any] | None = None


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="Paused by an admin", min_length=1, max_length=500)


JUDGE_EXAMPLE: dict[str, Any] = {
    "id": 3,
    "project_id": 1,
    "user_id": 42,
    "name": "qwen-judge",
    "backend": "openai",
    "model": "Qwen2.5-7B-Instruct",
    "base_url": "http://127.0.0.1:8000/v1",
    "api_key_env": "JUDGE_API_KEY",
    "method": "listwise",
    "prompt_template": "",
    "principles": ["Prefer the honest answer.", "Prefer the harmless answer."],
    "prompt_version": 2,
    "overlap": "unreached",
    "share": 1.0,
    "position_check_share": 0.1,
    "concurrency": 4,
    "requests_per_minute": 120,
    "timeout_s": 60.0,
    "max_attempts": 3,
    "agreement_floor": None,
    "relative_floor": 0.5,
    "floor_min_pairs": 30,
    "flag_harm": False,
    "options": {"temperature": 0},
    "state": "active",
    "paused_reason": None,
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:00:00Z",
}


class JudgeOut(BaseModel):
    """A judge as the API shows it: the key's variable name, never a key."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [JUDGE_EXAMPLE]})

    id: int
    project_id: int
    user_id: int
    name: str
    backend: str
    model: str
    base_url: str | None
    api_key_env: str | None
    method: str
    prompt_template: str
    principles: list[str]
    prompt_version: int
    overlap: str
    share: float
    position_check_share: float
    concurrency: int
    requests_per_minute: int | None
    timeout_s: float
    max_attempts: int
    agreement_floor: float | None
    relative_floor: float | None
    floor_min_pairs: int
    flag_harm: bool
    options: dict[str, Any]
    state: str
    paused_reason: str | None
    created_at: datetime
    updated_at: datetime


class JudgeList(BaseModel):
    items: list[JudgeOut]


_FORM_FIELDS = (
    "name",
    "backend",
    "model",
    "base_url",
    "api_key_env",
    "method",
    "overlap",
    "share",
    "position_check_share",
    "concurrency",
    "requests_per_minute",
    "timeout_s",
    "max_attempts",
    "agreement_floor",
    "relative_floor",
    "floor_min_pairs",
)
_FORM_NULLABLE = (
    "base_url",
    "api_key_env",
    "requests_per_minute",
    "agreement_floor",
    "relative_floor",
)


def form_fields(form: Mapping[str, Any], *, editing: bool) -> dict[str, Any]:
    """The add/edit form as a JudgeCreate/JudgeUpdate body: a blank box keeps the default
    (a blank optional one clears it when editing), principles one per line, options as JSON.
    Raises ValueError with a message for a page."""
    data: dict[str, Any] = {}
    for field in _FORM_FIELDS:
        value = str(form.get(field, "")).strip()
        if value:
            data[field] = value
        elif editing and field in _FORM_NULLABLE and field in form:
            data[field] = None
    if "prompt_template" in form:
        data["prompt_template"] = str(form["prompt_template"]).replace("\r\n", "\n").strip()
    if "principles" in form:
        data["principles"] = str(form["principles"]).splitlines()
    options = str(form.get("options", "")).strip()
    if options:
        try:
            data["options"] = json.loads(options)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Options must be a JSON object: {exc.msg}") from None
        if not isinstance(data["options"], dict):
            raise ValueError("Options must be a JSON object")
    elif editing and "options" in form:
        data["options"] = {}
    if editing or "flag_harm" in form:
        data["flag_harm"] = form.get("flag_harm") in ("on", "true", "1")
    return data
