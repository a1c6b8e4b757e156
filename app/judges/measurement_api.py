"""GET /api/v1/judges/{id}/measures: how far a model judge agrees with people
(app.judges.measurement)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.auth import ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.judges import measurement

router = APIRouter(
    prefix="/api/v1",
    tags=["judges"],
    route_class=ApiRoute,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)


class EstimateOut(BaseModel):
    value: float | None = Field(description="The estimate; null when nothing was measured.")
    low: float | None = Field(description="Low end of its 95% interval.")
    high: float | None = Field(description="High end of its 95% interval.")
    n: int = Field(description="What it rests on: pairs, or tasks for Kendall's tau.")


class RelativeOut(BaseModel):
    judge_person: EstimateOut = Field(
        description="Share of (judge, person) pairs on shared tasks ordered alike, ties left "
        "out (n: those pairs)."
    )
    person_person: EstimateOut = Field(
        description="People's own agreement: share of (person, person) pairs ordered alike."
    )
    ratio: EstimateOut = Field(
        description="(judge-person - 0.5) / (person-person - 0.5): reliability relative to a "
        "typical person, 1 = as good as one (bootstrap over tasks; high null: unbounded; value "
        "null: undefined)."
    )
    n_tasks: int = Field(description="Tasks with a judge-person or person-person pair.")
    undefined: str | None = Field(description="Why the ratio is undefined, if it is.")


class JudgeMeasuresOut(BaseModel):
    judge_id: int
    n_tasks: int = Field(description="Non-gold tasks ranked by the judge and by people.")
    n_pairs: int = Field(description="Sample pairs of those tasks compared with the consensus.")
    agreement: EstimateOut = Field(
        description="Share of pairs on which the judge agrees with the people's consensus "
        "(Wilson interval over pairs)."
    )
    kendall_tau: EstimateOut = Field(
        description="Mean Kendall tau-b with the consensus per task (bootstrap over tasks)."
    )
    position_checks: int = Field(description="Tasks judged again with the order reversed.")
    flip_rate: EstimateOut = Field(
        description="Share of checked pairs whose verdict flipped with the order (Wilson)."
    )
    gold: EstimateOut = Field(
        description="Share of its gold pairs ordered as the known answer, ties half (Wilson)."
    )
    relative: RelativeOut = Field(
        description="The relative floor's figures: the judge against each person beside "
        "people against each other."
    )


MEASURES_EXAMPLE: dict[str, Any] = {
    "judge_id": 3,
    "n_tasks": 41,
    "n_pairs": 246,
    "agreement": {"value": 0.78, "low": 0.72, "high": 0.83, "n": 246},
    "kendall_tau": {"value": 0.55, "low": 0.44, "high": 0.65, "n": 41},
    "position_checks": 4,
    "flip_rate": {"value": 0.125, "low": 0.04, "high": 0.31, "n": 24},
    "gold": {"value": None, "low": None, "high": None, "n": 0},
    "relative": {
        "judge_person": {"value": 0.53, "low": 0.47, "high": 0.6, "n": 212},
        "person_person": {"value": 0.56, "low": 0.52, "high": 0.61, "n": 480},
        "ratio": {"value": 0.5, "low": 0.05, "high": 0.96, "n": 212},
        "n_tasks": 96,
        "undefined": None,
    },
}


@router.get(
    "/judges/{judge_id}/measures",
    summary="A model judge measured against people",
    description="Agreement with the human consensus on tasks both ranked (pairwise agreement "
    "and Kendall's tau, with 95% intervals and counts), reliability relative to a typical "
    "person (the judge against each person beside people against each other), position bias "
    "(how often a verdict flips with the order reversed) and agreement with gold tasks.",
    responses={200: {"content": {"application/json": {"example": MEASURES_EXAMPLE}}}},
)
def get_measures(session: SessionDep, token: ReadToken, judge_id: IdPath) -> JudgeMeasuresOut:
    measures = measurement.judge_measures(session, judge_id=judge_id)
    return JudgeMeasuresOut.model_validate(asdict(measures))
