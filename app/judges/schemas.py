"""What the judge pages and API take and return.

A judge's key is never part of it: `api_key_env` names the environment variable the judging
worker reads, and a value that looks like a key itself is refused (422) so it is never stored.
"""

from __future__ import annotations

import re
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
_KEY_LIKE = re.compile(r"^(sk-|sk_|pk-|hf_|gsk_|xai-|bearer\s)", re.IGNORECASE)
MAX_PRINCIPLES = 50


def _looks_like_key(value: str) -> bool:
    if _KEY_LIKE.match(value):
        return True
    has_lower = any(c.islower() for c in value)
    has_digit = any(c.isdigit() for c in value)
    return len(value) >= 24 and has_lower and has_digit and " " not in value


def check_api_key_env(value: str | None) -> str | None:
    """The name of an environment variable, or None; never a key itself."""
    if value is None or not value.strip():
        return None
    value = value.strip()
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
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
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
    base_url: str | None = Field(default=None, max_length=500)
    api_key_env: str | None = Field(
        default=None,
        max_length=128,
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
    agreement_floor: float | None = Field(default=0.6, ge=0, le=1)
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
    base_url: str | None = Field(default=None, max_length=500)
    api_key_env: str | None = Field(default=None, max_length=128)
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
    floor_min_pairs: int | None = Field(default=None, ge=1, le=1000000)
    flag_harm: bool | None = None
    options: dict[str, Any] | None = None


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="Paused by an admin", min_length=1, max_length=500)


class JudgeOut(BaseModel):
    """A judge as the API shows it: the key's variable name, never a key."""

    model_config = ConfigDict(from_attributes=True)

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
    floor_min_pairs: int
    flag_harm: bool
    options: dict[str, Any]
    state: str
    paused_reason: str | None
    created_at: datetime
    updated_at: datetime


class JudgeProgressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    judge_id: int
    name: str
    state: str
    paused_reason: str | None
    ranked: int
    skipped: int
    remaining: int
    last_skip_reason: str | None
