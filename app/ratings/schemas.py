"""JSON shapes of the ratings API (GET /api/v1/projects/{id}/leaderboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["better", "worse", "not distinguishable yet"]


class LeaderboardVersion(BaseModel):
    id: int
    number: int
    name: str
    kind: str
    status: str
    rating: float | None = Field(
        description="Bradley-Terry rating (400·β + 1000, mean β = 0); null before the version "
        "met another version in a ranking."
    )
    ci_low: float | None = Field(description="2.5th percentile of the ranking bootstrap.")
    ci_high: float | None = Field(description="97.5th percentile of the ranking bootstrap.")
    elo: float | None = Field(description="Online Elo over the same comparisons (K = 4).")
    comparisons: int = Field(description="Comparisons against samples of other versions.")
    previous_version_id: int | None = Field(
        description="The version this one is judged against: its parent, else the nearest "
        "lower-numbered rated version."
    )
    win_rate_vs_previous: float | None = Field(
        description="Share of direct comparisons with the previous version won (ties count "
        "half); null without direct comparisons."
    )
    verdict: Verdict | None = Field(
        description="From the 95% bootstrap interval of the rating difference with the "
        "previous version; null for the first version."
    )
    human_verdict: Literal["better", "worse"] | None = Field(
        default=None,
        description="The verdict when the previous version is this version's parent and the "
        "interval resolves (stored on the version with each fit); a current version rated "
        "worse is flagged, with a roll back to the parent.",
    )


class PositionBiasOut(BaseModel):
    """How often the first-shown card is ranked first, and the ratings' first-card term."""

    rankings: int = Field(description="Usable non-gold rankings with a recorded card order.")
    first_card_rate: float = Field(
        description="Share of rankings whose first-shown card is in the top group (a top "
        "group of g cards counts 1/g)."
    )
    expected_rate: float = Field(description="The same with no position effect: mean 1/K.")
    ci_low: float = Field(description="Wilson 95% interval of first_card_rate.")
    ci_high: float
    significant: bool = Field(
        description="expected_rate lies outside the interval (at least 10 rankings)."
    )
    gamma: float | None = Field(
        description="First-card term of a Bradley-Terry fit, natural log-odds; null without "
        "comparisons."
    )
    gamma_low: float | None = Field(description="95% interval, clustered by ranking.")
    gamma_high: float | None
    gamma_points: float | None = Field(description="gamma in rating points (400/ln 10 · γ).")
    corrected: bool = Field(
        description="The ratings include the term: the project's position correction is on "
        "and the bias is significant."
    )


class LeaderboardOut(BaseModel):
    project_id: int
    computed_at: datetime | None = Field(description="When the stored fit's data was read.")
    recompute_pending: bool = Field(
        description="Rankings arrived that the stored fit does not include yet: a background "
        "recomputation is due or running (true until the new fit is stored)."
    )
    versions: list[LeaderboardVersion] = Field(description="Best rating first; unrated last.")
    reliability_weighted: bool = Field(
        default=False,
        description="The version ratings weight each comparison by its annotator's reliability "
        "weight (the project's setting is on and the stored fit gave someone a weight below 1).",
    )
    uniform_tasks_only: bool = Field(
        default=False,
        description="The version ratings are computed on uniformly drawn tasks only: active "
        "selection chose some tasks, and their comparisons would bias the evaluation.",
    )
    position_bias: PositionBiasOut | None = Field(
        default=None, description="Position bias of the card order; null before any ranking."
    )
    raters: Literal["human", "ai", "all"] = Field(
        default="human",
        description="Whose rankings the ratings count: people ('human'), model judges ('ai') "
        "or both ('all'). The stored fit counts people, and judges too when the project counts "
        "them in human figures; another view is fitted on the fly.",
    )
