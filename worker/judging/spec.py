"""What a judge is told to do (JudgeSpec), what it sees (JudgeInput) and what it answers (Verdict).

worker/judging never touches the database: the job builds a JudgeSpec from a Judge row and a
JudgeInput from a lease, and stores the Verdict through the app's judge service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

BACKENDS = ("hf", "openai", "simulated")
METHODS = ("listwise", "pairwise", "logprob")
RAW_LIMIT = 2000


@dataclass(frozen=True)
class JudgeSpec:
    """How one judge ranks: built from a Judge row by the judging job."""

    backend: str
    """'hf' (local causal LM), 'openai' (chat-completions endpoint) or 'simulated'."""
    model: str
    """Hub id or local path for 'hf'; the endpoint's model name for 'openai'."""
    method: str
    """'listwise' (one parsed ordering), 'pairwise' (each pair, both orders, BT) or 'logprob'."""
    prompt_template: str
    """Template with {guidelines} {principles} {prompt} {samples}; '' means DEFAULT_TEMPLATE."""
    principles: list[str]
    """Numbered into the prompt, in the spirit of a constitution."""
    base_url: str | None = None
    """Endpoint root for 'openai', e.g. http://127.0.0.1:8000/v1."""
    api_key: str | None = field(default=None, repr=False)
    """Sent only in the Authorization header; never logged, stored or put in errors."""
    timeout_s: float = 60.0
    """Per-request timeout (endpoint) — a slow request is retried like a 5xx."""
    max_attempts: int = 3
    """Tries per item for malformed output and for transient endpoint failures."""
    requests_per_minute: int | None = None
    """Rate limit shared by every judge on the same base_url (None: unlimited)."""
    flag_harm: bool = False
    """Also ask which samples look harmful (a suggestion for people, never a final flag):
    listwise adds a HARMFUL line, logprob a Yes/No question; pairwise and simulated ask none."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend extras: max_new_tokens, temperature; simulated: preference, agreement, seed."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown judge backend {self.backend!r}; expected one of {BACKENDS}")
        if self.method not in METHODS:
            raise ValueError(f"unknown judge method {self.method!r}; expected one of {METHODS}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1 (or None for no limit)")


@dataclass(frozen=True)
class JudgeInput:
    """One task as the judge sees it."""

    prompt: str
    """The task's prompt text (a conversation already flattened)."""
    samples: list[tuple[int, str]]
    """(sample_id, text) in the order to show the judge; labelled [1]..[K] in that order."""
    guidelines: str
    """The project's guidelines for people, shown to the judge too."""


@dataclass(frozen=True)
class Verdict:
    """A judge's ranking, in the same shape as Ranking.groups."""

    groups: list[list[int]]
    """Sample ids best first; ties share an inner list."""
    attempts: int
    """Model calls spent on the item (malformed answers retried)."""
    harmful: dict[int, str]
    """sample_id -> reason, only when the spec asks to flag harm."""
    raw: str | None
    """The model's last output, truncated to RAW_LIMIT characters, for debugging."""


class JudgeError(Exception):
    """Base of judging failures; str(e) is a one-line reason safe to store and show."""


class MalformedOutput(JudgeError):
    """The model's answer could not be parsed; retried up to max_attempts, then raised."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts
        """Answers the judge gave for the item before giving up."""


class EndpointUnavailable(JudgeError):
    """Timeouts, 429s or 5xx that outlasted the retries and backoff."""


class Judge(Protocol):
    """Anything that ranks one JudgeInput."""

    def judge(self, item: JudgeInput) -> Verdict: ...


def truncate_raw(text: str | None) -> str | None:
    """Keep stored model output small."""
    return None if text is None else text[:RAW_LIMIT]
