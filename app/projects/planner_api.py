"""GET /api/v1/projects/{id}/plan: the study planner's estimates of the rankings still needed
(app.projects.planner_service)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.auth import ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.projects import planner_service
from app.projects.planner import Plan

router = APIRouter(
    prefix="/api/v1",
    tags=["projects"],
    route_class=ApiRoute,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)


class PlanOut(BaseModel):
    """One estimate of the rankings still needed, with its range."""

    goal: str = Field(description='"accuracy" or "verdict".')
    estimate: int | None = Field(
        description="More rankings needed (0: reached); null when no estimate (see `reason`)."
    )
    low: int | None = Field(description="Low end of the range (`level` of the resampled plans).")
    high: int | None = Field(
        description="High end; null with `estimate` set when the goal is never reached in part of "
        "the range (open-ended)."
    )
    level: float = Field(description="Central share of the resampled plans the range holds.")
    now: int = Field(description="Rankings so far that the estimate counts from.")
    basis: list[int] = Field(description="Rankings behind each point of the fitted curve.")
    target: float | None = Field(description="Held-out accuracy aimed at (goal accuracy).")
    plateau: float | None = Field(description="Accuracy the curve levels off at.")
    exponent: float | None = Field(
        description="Accuracy curve: c of a − b·n^(−c). Verdict: the exponent the interval "
        "widths shrank with on the prefixes (1/√n assumed; null under 3 prefixes)."
    )
    difference: float | None = Field(description="Rating difference new − old now (verdict).")
    reason: str | None = Field(description="Why there is no estimate, in one line.")

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(
            goal=plan.goal,
            estimate=plan.estimate,
            low=plan.low,
            high=plan.high,
            level=plan.level,
            now=plan.now,
            basis=list(plan.basis),
            target=plan.target,
            plateau=plan.plateau,
            exponent=plan.exponent,
            difference=plan.difference,
            reason=plan.reason,
        )


class RewardModelPointOut(BaseModel):
    number: int
    rankings: int = Field(description="Distinct rankings in its training snapshot.")
    accuracy: float = Field(description="Held-out pairwise accuracy.")


class StudyPlanOut(BaseModel):
    project_id: int
    rankings: int = Field(description="Rankings so far (no gold tasks, no excluded annotators).")
    accuracy: PlanOut
    reward_models: list[RewardModelPointOut]
    verdict: PlanOut
    new_version: int | None = Field(description="Number of the version the verdict is about.")
    old_version: int | None = Field(description="Number of the version it is judged against.")

    @classmethod
    def of(cls, plan: planner_service.StudyPlan) -> StudyPlanOut:
        return cls(
            project_id=plan.project_id,
            rankings=plan.rankings,
            accuracy=PlanOut.of(plan.accuracy),
            reward_models=[
                RewardModelPointOut(number=p.number, rankings=p.rankings, accuracy=p.accuracy)
                for p in plan.reward_models
            ],
            verdict=PlanOut.of(plan.verdict),
            new_version=plan.new_version,
            old_version=plan.old_version,
        )


PLAN_EXAMPLE: dict[str, Any] = {
    "project_id": 1,
    "rankings": 1310,
    "accuracy": {
        "goal": "accuracy",
        "estimate": 1180,
        "low": 640,
        "high": 2900,
        "level": 0.8,
        "now": 1310,
        "basis": [300, 600, 1200],
        "target": 0.78,
        "plateau": 0.8,
        "exponent": 0.52,
        "difference": None,
        "reason": None,
    },
    "reward_models": [
        {"number": 1, "rankings": 300, "accuracy": 0.69},
        {"number": 2, "rankings": 600, "accuracy": 0.73},
        {"number": 3, "rankings": 1200, "accuracy": 0.755},
    ],
    "verdict": {
        "goal": "verdict",
        "estimate": 420,
        "low": 90,
        "high": None,
        "level": 0.8,
        "now": 610,
        "basis": [153, 305, 458, 610],
        "target": None,
        "plateau": None,
        "exponent": 0.47,
        "difference": 14.2,
        "reason": None,
    },
    "new_version": 3,
    "old_version": 2,
}
"""Three reward models and an undecided v3 against v2 (validated against StudyPlanOut)."""

Target = Annotated[
    float | None,
    Query(
        gt=0,
        le=1,
        description="Held-out accuracy to plan for; omitted: the curve's plateau less 0.02.",
    ),
]


@router.get(
    "/projects/{project_id}/plan",
    summary="Study planner: rankings still needed",
    description="From the learning curve of the reward models' held-out accuracy, the more "
    "rankings that reach `target`; from the interval of the rating difference between the "
    "current version and its previous one on growing prefixes of the rankings, the more "
    "rankings until it excludes 0. Each with an 80% range; `reason` says why when there is no "
    "estimate (one reward model, no versions compared yet).",
    responses={200: {"content": {"application/json": {"example": PLAN_EXAMPLE}}}},
)
def get_plan(
    session: SessionDep, token: ReadToken, project_id: IdPath, target: Target = None
) -> StudyPlanOut:
    return StudyPlanOut.of(
        planner_service.study_plan(session, project_id=project_id, target=target)
    )
