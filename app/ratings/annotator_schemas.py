"""JSON shapes of the annotator table API (GET /api/v1/projects/{id}/annotators and the
exclusion endpoints); the page's rows (app.ratings.annotators) as clients see them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.ratings.annotators import AnnotatorTableRow, Reliability

Status = Literal["member", "former member", "excluded"]


class GoldAccuracyOut(BaseModel):
    correct: int
    answered: int
    lower: float = Field(description="95% Wilson interval of the accuracy.")
    upper: float


class ReliabilityOut(BaseModel):
    reliability: float = Field(
        description="Probability that the annotator orders a pair as the consensus does "
        "(0.5: chance; below: reversed), from the ratings job's Crowd-BT fit."
    )
    lower: float = Field(description="95% interval of `reliability`.")
    upper: float
    weight: float = Field(
        description="What their comparisons count for when the project weights by reliability."
    )
    flag: Literal["reversed", "chance"] | None = Field(
        description="'reversed': reliably below chance; 'chance': reliably near it."
    )
    evidence: str | None = Field(description="Why flagged, in one sentence.")
    comparisons: int
    gold: GoldAccuracyOut | None = Field(description="Null before any gold task was answered.")
    fitted_at: datetime

    @classmethod
    def of(cls, fit: Reliability) -> ReliabilityOut:
        interval = fit.gold_interval
        gold = None
        if interval is not None:
            gold = GoldAccuracyOut(
                correct=fit.gold_correct,
                answered=fit.gold_answered,
                lower=interval[0],
                upper=interval[1],
            )
        return cls(
            reliability=fit.reliability,
            lower=fit.lower,
            upper=fit.upper,
            weight=fit.weight,
            flag=fit.flag,  # type: ignore[arg-type]
            evidence=fit.evidence,
            comparisons=fit.comparisons,
            gold=gold,
            fitted_at=fit.fitted_at,
        )


class AnnotatorOut(BaseModel):
    user_id: int
    username: str
    display_name: str
    status: Status
    exclusion_reason: str | None
    rankings: int = Field(description="Tasks ranked ('none usable' answers not counted).")
    shared_tasks: int = Field(description="Tasks also ranked by another included annotator.")
    agreement: float | None = Field(
        description="Mean pairwise agreement with the consensus of the included others on "
        "shared tasks; null without shared tasks."
    )
    outlier: bool = Field(
        description="The annotator's votes are improbable under ratings fitted without them "
        "(Chatbot Arena's test, α = 0.05)."
    )
    reliability: ReliabilityOut | None = Field(
        description="Null before the ratings job fitted this annotator."
    )

    @classmethod
    def of(cls, row: AnnotatorTableRow) -> AnnotatorOut:
        return cls(
            user_id=row.user_id,
            username=row.username,
            display_name=row.display_name,
            status=row.status,  # type: ignore[arg-type]
            exclusion_reason=row.exclusion_reason,
            rankings=row.rankings,
            shared_tasks=row.shared_tasks,
            agreement=row.agreement,
            outlier=row.outlier,
            reliability=ReliabilityOut.of(row.reliability) if row.reliability else None,
        )


class AnnotatorPage(BaseModel):
    items: list[AnnotatorOut]
    total: int = Field(description="Annotators in the project (members and former members).")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class ExclusionIn(BaseModel):
    reason: str = Field(default="", max_length=500, description="Shown on the leaderboard.")


class ExclusionOut(BaseModel):
    project_id: int
    user_id: int
    reason: str | None
    excluded_by_id: int | None
    created_at: datetime


ANNOTATOR_PAGE_EXAMPLE = {
    "items": [
        {
            "user_id": 7,
            "username": "ann-7",
            "display_name": "Ann Seven",
            "status": "member",
            "exclusion_reason": None,
            "rankings": 184,
            "shared_tasks": 61,
            "agreement": 0.34,
            "outlier": True,
            "reliability": {
                "reliability": 0.31,
                "lower": 0.22,
                "upper": 0.41,
                "weight": 0.0,
                "flag": "reversed",
                "evidence": "agrees with the consensus on 31% of 184 pairs (95% interval "
                "22–41%) over 30 tasks; gold 2/9",
                "comparisons": 1104,
                "gold": {"correct": 2, "answered": 9, "lower": 0.06, "upper": 0.55},
                "fitted_at": "2026-03-02T09:15:00Z",
            },
        }
    ],
    "total": 1,
    "next_cursor": None,
}
"""One flagged annotator (validated against AnnotatorPage by the tests)."""
