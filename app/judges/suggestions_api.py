"""GET /api/v1/projects/{id}/suggestions/report: how often people keep a judge's suggested
order with it shown and without it (the control share): the suggestion's anchoring."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.auth import ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.judges.suggestions import SuggestionArm, SuggestionReport, suggestion_report

router = APIRouter(tags=["judges"], route_class=ApiRoute, responses={**AUTH_RESPONSES, **NOT_FOUND})


class SuggestionArmOut(BaseModel):
    rankings: int = Field(description="People's rankings in this arm with a judge ranking.")
    kept_top: int = Field(description="Of them, those whose best group is the judge's.")
    kept_top_rate: float | None
    kept_top_low: float | None = Field(description="95% Wilson interval of kept_top_rate.")
    kept_top_high: float | None
    agreeing_pairs: int
    compared_pairs: int = Field(description="Sample pairs both ordered strictly.")
    pair_agreement: float | None

    @classmethod
    def of(cls, arm: SuggestionArm) -> SuggestionArmOut:
        low, high = arm.kept_top_interval
        return cls(
            rankings=arm.rankings,
            kept_top=arm.kept_top,
            kept_top_rate=arm.kept_top_rate,
            kept_top_low=low,
            kept_top_high=high,
            agreeing_pairs=arm.agreeing_pairs,
            compared_pairs=arm.compared_pairs,
            pair_agreement=arm.pair_agreement,
        )


class SuggestionReportOut(BaseModel):
    project_id: int
    enabled: bool = Field(description="The project shows judge suggestions now.")
    control_share: float = Field(description="Share of leases shown without the suggestion.")
    shown: SuggestionArmOut
    hidden: SuggestionArmOut = Field(
        description="The control share: compared with the judge ranking they did not see."
    )
    anchoring: float | None = Field(
        description="kept_top_rate shown minus hidden: how much seeing the suggestion moves "
        "people towards it."
    )

    @classmethod
    def of(cls, report: SuggestionReport) -> SuggestionReportOut:
        return cls(
            project_id=report.project_id,
            enabled=report.enabled,
            control_share=report.control_share,
            shown=SuggestionArmOut.of(report.shown),
            hidden=SuggestionArmOut.of(report.hidden),
            anchoring=report.anchoring,
        )


_ARM = {
    "rankings": 120,
    "kept_top": 84,
    "kept_top_rate": 0.7,
    "kept_top_low": 0.61,
    "kept_top_high": 0.77,
    "agreeing_pairs": 540,
    "compared_pairs": 700,
    "pair_agreement": 0.771,
}
SUGGESTION_REPORT_EXAMPLE = {
    "project_id": 1,
    "enabled": True,
    "control_share": 0.25,
    "shown": _ARM,
    "hidden": {
        **_ARM,
        "rankings": 40,
        "kept_top": 22,
        "kept_top_rate": 0.55,
        "kept_top_low": 0.4,
        "kept_top_high": 0.69,
    },
    "anchoring": 0.15,
}


@router.get(
    "/projects/{project_id}/suggestions/report",
    summary="How often people keep a judge's suggested order, shown and hidden",
    responses={200: {"content": {"application/json": {"example": SUGGESTION_REPORT_EXAMPLE}}}},
)
def get_suggestion_report(
    session: SessionDep, token: ReadToken, project_id: IdPath
) -> SuggestionReportOut:
    return SuggestionReportOut.of(suggestion_report(session, project_id=project_id))
