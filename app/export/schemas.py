"""Export query parameters and the documented shape of one exported line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query
from pydantic import BaseModel, BeforeValidator, Field

from app.errors import InvalidInput
from app.ids import MAX_ID

PromptFormat = Literal["auto", "text", "conversational"]
Source = Literal["human", "ai", "all"]
SOURCES: dict[str, tuple[str, ...]] = {"human": ("human",), "ai": ("ai",), "all": ("human", "ai")}
"""The `source` parameter → the rankings.source / comparisons.source values it keeps."""


@dataclass(frozen=True)
class ExportParams:
    """Filters as given; the service checks them against the project."""

    policy_version: tuple[int, ...]
    round: int | None
    annotator: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    min_agreement: float | None
    exclude_flagged: bool
    include_excluded_annotators: bool
    snapshot: int | None
    prompt_format: PromptFormat
    compress: Literal["gzip"] | None
    include_gold: bool = False
    source: Source = "human"


def _utc(value: datetime | None, field: str) -> datetime | None:
    """A time without a zone is read as UTC (the database keeps UTC)."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the last UTC date
        raise InvalidInput(
            f"{field} is outside the years 1-9999 in UTC",
            details=[{"field": field, "message": "out of range"}],
        ) from None


def _not_a_number(value: Any) -> Any:
    """The schema says date-time: a bare number ("0.5") is refused, not read as Unix time."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("expected a date and time such as 2026-05-01T09:00:00Z")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
IsoDatetime = Annotated[datetime, BeforeValidator(_not_a_number)]


def export_params(
    policy_version: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None,
        Query(
            description="Only comparisons with a sample written by one of these policy "
            "versions (ids; repeat the parameter for several).",
            examples=[[3]],
        ),
    ] = None,
    round: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="Round id: only comparisons whose newest sample comes from the policy "
            "version this round trained (the `round` field of a line).",
        ),
    ] = None,
    annotator: Annotated[
        list[str] | None,
        Query(
            description="Only these annotators: their pseudonyms (annotator-…), or usernames "
            "with a read:annotators token. Repeat for several.",
        ),
    ] = None,
    since: Annotated[
        IsoDatetime | None, Query(description="Only data created at or after this time (UTC).")
    ] = None,
    until: Annotated[
        IsoDatetime | None, Query(description="Only data created before this time (UTC).")
    ] = None,
    min_agreement: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            description="Only tasks ranked by several annotators whose pairwise agreement rate "
            "(share of sample pairs two annotators order the same way) is at least this.",
        ),
    ] = None,
    exclude_flagged: Annotated[
        bool,
        Query(
            description="Leave out samples flagged as harmful (pairs touching them; in "
            "rankings, the samples themselves). Ignored with `snapshot`."
        ),
    ] = True,
    include_excluded_annotators: Annotated[
        bool,
        Query(
            description="Keep votes of annotators an admin excluded from the project. "
            "Ignored with `snapshot`."
        ),
    ] = False,
    snapshot: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="Comparison snapshot id: exactly the comparisons a reward model version "
            "or a DPO round was trained on (see `snapshot_id` of a policy version or round).",
        ),
    ] = None,
    prompt_format: Annotated[
        PromptFormat,
        Query(
            description="`text`: prompts as strings; `conversational`: lists of {role, "
            "content} (and chosen/rejected as one assistant message); `auto`: conversational "
            "when the project has any multi-turn prompt, so every line has the same types.",
        ),
    ] = "auto",
    compress: Annotated[
        Literal["gzip"] | None,
        Query(description="`gzip`: send a .jsonl.gz file (Accept-Encoding: gzip also works)."),
    ] = None,
    include_gold: Annotated[
        bool,
        Query(
            description="Keep the rankings of gold tasks (tasks with a known answer, mixed "
            "into the queue to measure annotators). Off by default: they are not training "
            "data. Ignored with `snapshot` (snapshots never hold them)."
        ),
    ] = False,
    source: Annotated[
        Source,
        Query(
            description="Whose rankings: `human` (people's, the default), `ai` (model "
            "judges'), or `all`. Ignored with `snapshot` (it holds exactly what trained)."
        ),
    ] = "human",
) -> ExportParams:
    return ExportParams(
        policy_version=tuple(policy_version or ()),
        round=round,
        annotator=tuple(annotator or ()),
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        min_agreement=min_agreement,
        exclude_flagged=exclude_flagged,
        include_excluded_annotators=include_excluded_annotators,
        snapshot=snapshot,
        prompt_format=prompt_format,
        compress=compress,
        include_gold=include_gold,
        source=source,
    )


ExportParamsDep = Annotated[ExportParams, Depends(export_params)]


class Message(BaseModel):
    role: str
    content: str


class PolicyVersions(BaseModel):
    chosen: int
    rejected: int


class PairLine(BaseModel):
    """One line of pairs.jsonl: TRL's preference format plus provenance."""

    prompt: str | list[Message]
    chosen: str | list[Message]
    rejected: str | list[Message]
    comparison_id: int
    prompt_id: int
    chosen_id: int
    rejected_id: int
    annotator: str = Field(description="Username with read:annotators, else a pseudonym.")
    policy_versions: PolicyVersions
    round: int = Field(
        description="Id of the newest round that trained either version; 0 when no round did "
        "(base, uploaded or external versions). Never null, so every line has the same types."
    )
    created_at: datetime
    source: Source = Field(description="'human', or 'ai' for a model judge's comparison.")
    tie: bool | None = Field(default=None, description="Only with include_ties=true.")


class RankedSample(BaseModel):
    sample_id: int
    text: str
    policy_version: int


class RankingLine(BaseModel):
    """One line of rankings.jsonl: the annotator's full order, best group first."""

    ranking_id: int
    task_id: int
    prompt_id: int
    prompt: str | list[Message]
    groups: list[list[RankedSample]] = Field(description="Tie groups, best first.")
    none_usable: bool
    none_usable_reason: str = Field(description="Empty unless none_usable.")
    annotator: str
    round: int = Field(description="As in pairs.jsonl: 0 when no round trained the versions.")
    created_at: datetime
    source: Source = Field(description="'human', or 'ai' for a model judge's ranking.")
    judge: str | None = Field(
        default=None,
        description="A judge's ranking: the judge's name (every line has it when the export "
        "holds judges' rankings; empty for a person's).",
    )
    judge_prompt_version: int | None = Field(
        default=None, description="With `judge`: the judge's prompt version (0 for a person's)."
    )


PAIR_EXAMPLE: dict[str, Any] = {
    "prompt": "Write a haiku about autumn.",
    "chosen": "Red leaves drift and fall…",
    "rejected": "Autumn is a season.",
    "comparison_id": 812,
    "prompt_id": 17,
    "chosen_id": 301,
    "rejected_id": 299,
    "annotator": "annotator-3f9a1c0b",
    "policy_versions": {"chosen": 2, "rejected": 1},
    "round": 1,
    "created_at": "2026-05-04T10:21:07.123456+00:00",
    "source": "human",
}
