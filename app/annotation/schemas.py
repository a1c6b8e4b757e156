"""What the annotation endpoints take and give, as JSON (`Accept: application/json`).

The page and the simulated annotators use the same endpoints; a JSON client sends the session
cookie and the X-CSRF-Token header, like the page's HTMX requests do.

POST /annotate/next                 → NextTaskOut
    {"task": {"id": 7, "project_id": 1, "lease_expires_at": "2026-…Z",
              "prompt": {"text": "…", "messages": null | [{"role", "content"}, …]},
              "samples": [{"id": 31, "number": 1, "text": "…",          # display order
                           "suggested_harmful": null | "a judge's reason"}, …],
              "suggestion": null | {"groups": [[31], [29]], "numbers": [[1], [3]],
                                    "label": "AI suggestion — check it yourself"}},
     "counts": {"today": 3, "total": 41}, "preparing": null}
    "task" is null when nothing needs this annotator right now; "preparing" then says what
    new tasks wait for, when something is under way (a model being built, a sampling job).
    "suggestion" is a model judge's order (sample ids and card numbers, best first), shown
    only when the project turns suggestions on, on leases outside the control share;
    "suggested_harmful" is a judge's harm suggestion. Both are for the annotator to check.
POST /annotate/tasks/{id}/submit    SubmitRanking → SubmitOut
    {"groups": [[31], [29, 30], [28]],     # best first; ids in one list are tied
     "time_spent_ms": 5400,                # optional; the lease's age when left out
     "none_usable": false, "none_usable_reason": null,
     "flags": [{"sample_id": 29, "reason": "insults the user"}],
     "demonstration": null}                # optional: a good answer to the prompt, stored
                                           # as an SFT demonstration with this ranking
    → {"ranking_id": 5, "task_id": 7, "comparisons": 6, "ties": 1, "task_complete": false,
       "counts": {"today": 4, "total": 42}}
    A "none usable" answer sends "none_usable": true, a reason and no groups.
    Forms (the page) send the same fields; groups and flags as JSON text.
POST /annotate/tasks/{id}/skip      → SkipOut {"task_id": 7, "skipped": true}

Errors are {"error": {"code", "message", "details"}} with the status of the typed error:
422 invalid_input (bad ids, a bad shape), 409 not_leased / already_submitted / task_closed,
410 lease_expired, 404 not_found, 403 forbidden (not a member, bad CSRF token), 401.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import InvalidInput

MAX_TIME_SPENT_MS = 24 * 3600 * 1000
MAX_DEMONSTRATION_CHARS = 20_000


class Counts(BaseModel):
    """Rankings (none-usable answers included, skips not) by this annotator, all projects.

    "Today" is the UTC day.
    """

    today: int
    total: int


@dataclass(frozen=True)
class TextBlock:
    """A run of sample text: plain prose (whitespace kept) or a fenced code block."""

    kind: Literal["text", "code"]
    text: str


_FENCE = re.compile(r"^\s*```")


def split_code_blocks(text: str) -> list[TextBlock]:
    """Cut text at ``` fences so code shows in monospace; an unclosed fence runs to the end."""
    blocks: list[TextBlock] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            if current:
                blocks.append(TextBlock("code" if in_code else "text", "\n".join(current)))
            current, in_code = [], not in_code
            continue
        current.append(line)
    if current and (in_code or any(line.strip() for line in current)):
        blocks.append(TextBlock("code" if in_code else "text", "\n".join(current)))
    return blocks


class Message(BaseModel):
    role: str
    content: str

    def blocks(self) -> list[TextBlock]:
        return split_code_blocks(self.content)


SHOWN_EARLIER_TURNS = 2
"""The ranking page shows this many turns before the last one; older turns fold away."""


@dataclass(frozen=True)
class Conversation:
    """A conversation as the ranking page lays it out, in order: the system messages it opens
    with (always shown: they set the rules the answers follow), the older turns (folded), and
    the last SHOWN_EARLIER_TURNS turns with the final user turn that the answers reply to."""

    system: list[Message]
    folded: list[Message]
    shown: list[Message]


class PromptOut(BaseModel):
    text: str
    messages: list[Message] | None = None

    def conversation(self) -> Conversation | None:
        """The page's layout of a multi-message prompt; None for a one-message or plain one.

        A single old turn is not folded: a control that hides one message saves nothing."""
        messages = self.messages or []
        if len(messages) < 2:
            return None
        lead = 0
        while lead < len(messages) and messages[lead].role == "system":
            lead += 1
        cut = len(messages) - 1 - SHOWN_EARLIER_TURNS
        if cut - lead < 2:
            cut = lead
        return Conversation(messages[:lead], messages[lead:cut], messages[cut:])


class SampleOut(BaseModel):
    """A sample as the annotator sees it: no policy version, no generation details.

    `number` is its place in this annotator's shuffled order (1-based), shown on the card.
    """

    id: int
    number: int
    text: str
    suggested_harmful: str | None = None
    """A model judge suggests the sample is harmful (its reason): a suggestion for the
    annotator, who decides; None when no judge suggested so."""

    def blocks(self) -> list[TextBlock]:
        return split_code_blocks(self.text)


SUGGESTION_LABEL = "AI suggestion — check it yourself"


class SuggestionOut(BaseModel):
    """A model judge's order of the task's samples, shown as a suggestion (never pre-filled
    into the ranking). Absent on the leases kept as the control share."""

    groups: list[list[int]]
    """Sample ids, best first; ids in one list are tied."""
    numbers: list[list[int]]
    """The same order as the cards' numbers on this annotator's page."""
    label: str = SUGGESTION_LABEL


class TaskOut(BaseModel):
    id: int
    project_id: int
    lease_expires_at: datetime
    prompt: PromptOut
    samples: list[SampleOut]
    suggestion: SuggestionOut | None = None


class NextTaskOut(BaseModel):
    task: TaskOut | None
    counts: Counts
    preparing: str | None = None
    """With no task: what new tasks wait for, as one line ("preparing: sampling 12 prompts…
    (4/12)"); None when nothing is being prepared."""


class FlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sample_id: int
    reason: Annotated[str, Field(max_length=1000)] = ""


class SubmitRanking(BaseModel):
    """Strict: a sample id is a JSON integer; "31" or true is a 422, never read as 31 or 1."""

    model_config = ConfigDict(extra="forbid", strict=True)

    groups: Annotated[list[list[int]], Field(max_length=64)] = []
    time_spent_ms: Annotated[int | None, Field(ge=0, le=MAX_TIME_SPENT_MS)] = None
    none_usable: bool = False
    none_usable_reason: Annotated[str | None, Field(max_length=1000)] = None
    flags: Annotated[list[FlagIn], Field(max_length=64)] = []
    demonstration: Annotated[str | None, Field(max_length=MAX_DEMONSTRATION_CHARS)] = None
    """The annotator's own good answer ("none usable — here is a good answer")."""

    @field_validator("none_usable_reason", "demonstration")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None

    @classmethod
    def parse(cls, data: Any) -> SubmitRanking:
        """Validate a JSON body, raising the app's 422 (the page shows its message)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                for err in exc.errors()
            ]
            raise InvalidInput("The submission has invalid fields", details=details) from None

    @classmethod
    def parse_form(cls, form: dict[str, Any]) -> SubmitRanking:
        """The page's form: groups and flags arrive as JSON text, the rest as strings."""
        data: dict[str, Any] = {}
        for field in ("groups", "flags"):
            raw = form.get(field)
            if raw not in (None, ""):
                try:
                    data[field] = json.loads(raw)
                except (TypeError, ValueError, RecursionError):
                    raise InvalidInput(
                        f"{field} must be JSON (not nested too deeply)", details={"field": field}
                    ) from None
        if form.get("time_spent_ms") not in (None, ""):
            spent = str(form["time_spent_ms"])  # form fields are text; the model is strict
            data["time_spent_ms"] = int(spent) if spent.isascii() and spent.isdigit() else spent
        data["none_usable"] = str(form.get("none_usable", "")).lower() in {"1", "true", "on"}
        for field in ("none_usable_reason", "demonstration"):
            if form.get(field) is not None:
                data[field] = form[field]
        return cls.parse(data)


class SubmitOut(BaseModel):
    ranking_id: int
    task_id: int
    comparisons: int
    ties: int
    task_complete: bool
    counts: Counts | None = None
    """The annotator's counters after the submit (always set in answers)."""


class SkipOut(BaseModel):
    task_id: int
    skipped: Literal[True] = True
