"""GET /api/v1/projects/{id}/leaderboard: the stored ratings of a project's policy versions;
GET /api/v1/projects/{id}/annotators: the leaderboard's annotator table, paged and sorted, and
POST/DELETE .../annotators/{user_id}/exclusion to exclude an annotator or include them again."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response

from app.api.auth import ApiPrincipal, ReadToken, WriteToken, require_scope
from app.api.pagination import PageDep, encode_cursor
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.ratings import annotators, position, service
from app.ratings.annotator_schemas import (
    ANNOTATOR_PAGE_EXAMPLE,
    AnnotatorOut,
    AnnotatorPage,
    ExclusionIn,
    ExclusionOut,
)
from app.ratings.repository import Raters
from app.ratings.schemas import LeaderboardOut

router = APIRouter(
    tags=["ratings"], route_class=ApiRoute, responses={**AUTH_RESPONSES, **NOT_FOUND}
)

LEADERBOARD_EXAMPLE: dict[str, Any] = {
    "project_id": 1,
    "computed_at": "2026-03-02T09:15:00Z",
    "recompute_pending": False,
    "versions": [
        {
            "id": 2,
            "number": 2,
            "name": "round 1 (reward_ppo)",
            "kind": "trained",
            "status": "current",
            "rating": 1041.7,
            "ci_low": 1019.2,
            "ci_high": 1063.5,
            "elo": 1012.3,
            "comparisons": 1830,
            "previous_version_id": 1,
            "win_rate_vs_previous": 0.61,
            "verdict": "better",
            "human_verdict": "better",
        },
        {
            "id": 1,
            "number": 1,
            "name": "base",
            "kind": "base",
            "status": "retired",
            "rating": 958.3,
            "ci_low": 936.5,
            "ci_high": 980.8,
            "elo": 987.7,
            "comparisons": 1830,
            "previous_version_id": None,
            "win_rate_vs_previous": None,
            "verdict": None,
        },
    ],
    "position_bias": {
        "rankings": 915,
        "first_card_rate": 0.31,
        "expected_rate": 0.25,
        "ci_low": 0.28,
        "ci_high": 0.34,
        "significant": True,
        "gamma": 0.29,
        "gamma_low": 0.17,
        "gamma_high": 0.41,
        "gamma_points": 50.4,
        "corrected": True,
    },
}
"""Two versions, the PPO child rated above its parent (validated against LeaderboardOut)."""


@router.get(
    "/projects/{project_id}/leaderboard",
    summary="Leaderboard of policy versions",
    description="Bradley-Terry ratings with 95% intervals (bootstrap over rankings), "
    "comparisons, win rate and verdict against the previous version. Recomputed in the "
    "background a few seconds after new rankings (`recompute_pending` is true from their "
    "arrival until the new fit is stored).",
    responses={200: {"content": {"application/json": {"example": LEADERBOARD_EXAMPLE}}}},
)
def get_leaderboard(
    session: SessionDep,
    token: ReadToken,
    project_id: IdPath,
    raters: Annotated[
        Raters | None,
        Query(description="Whose rankings: human, ai (model judges) or all; default: stored."),
    ] = None,
) -> LeaderboardOut:
    board = service.leaderboard(session, project_id=project_id, raters=raters)
    return board.model_copy(update={"position_bias": position.position_bias(session, project_id)})


# The annotator table

AnnotatorsToken = Annotated[ApiPrincipal, Depends(require_scope("read:annotators"))]
"""Rows name people: the scope that shows usernames in exports."""


@router.get(
    "/projects/{project_id}/annotators",
    summary="Annotators: agreement, reliability, flags (paged, sorted)",
    description="The leaderboard's annotator table: members and former members who ranked, "
    "with ranked and shared tasks, agreement with consensus, the outlier test, the stored "
    "reliability fit (null before the ratings job ran) with gold accuracy, its flag and "
    "evidence, and whether excluded. Sorted by `sort` (ties by name), `order` defaulting to "
    "the column's most telling end (least agreeing or reliable first, flagged first, busiest "
    "first, names A–Z). The cursor is a position in that order: a page fetched after the "
    "ratings job refitted may repeat or skip rows. Needs the `read:annotators` scope.",
    responses={200: {"content": {"application/json": {"example": ANNOTATOR_PAGE_EXAMPLE}}}},
)
def list_annotators(
    session: SessionDep,
    token: AnnotatorsToken,
    project_id: IdPath,
    page: PageDep,
    sort: Annotated[annotators.SortColumn, Query(description="Column to sort by.")] = "name",
    order: Annotated[annotators.Order | None, Query(description="asc or desc.")] = None,
) -> AnnotatorPage:
    offset = page.after_id or 0
    rows, total = annotators.annotator_slice(
        session, project_id=project_id, sort=sort, order=order, offset=offset, limit=page.limit
    )
    more = offset + len(rows) < total and len(rows) == page.limit
    return AnnotatorPage(
        items=[AnnotatorOut.of(row) for row in rows],
        total=total,
        next_cursor=encode_cursor(offset + len(rows)) if more else None,
    )


@router.post(
    "/projects/{project_id}/annotators/{user_id}/exclusion",
    summary="Exclude an annotator",
    description="Their comparisons leave the ratings (refitted at once) and future training "
    "snapshots; the membership is untouched. Members and former members who ranked here can "
    "be excluded; excluding again updates the reason.",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "project_id": 1,
                        "user_id": 7,
                        "reason": "Flagged reversed",
                        "excluded_by_id": 1,
                        "created_at": "2026-03-02T09:20:00Z",
                    }
                }
            }
        }
    },
)
def exclude_annotator(
    session: SessionDep,
    token: WriteToken,
    project_id: IdPath,
    user_id: IdPath,
    body: Annotated[ExclusionIn | None, Body()] = None,
) -> ExclusionOut:
    exclusion = service.set_excluded(
        session,
        project_id=project_id,
        user_id=user_id,
        excluded=True,
        reason=body.reason if body else "",
        by_user_id=token.user_id,
    )
    assert exclusion is not None
    return ExclusionOut.model_validate(exclusion, from_attributes=True)


@router.delete(
    "/projects/{project_id}/annotators/{user_id}/exclusion",
    summary="Include an excluded annotator again",
    description="Their comparisons rejoin the ratings (refitted at once). Nothing to undo is "
    "no error.",
    status_code=204,
    response_class=Response,
)
def include_annotator(
    session: SessionDep, token: WriteToken, project_id: IdPath, user_id: IdPath
) -> Response:
    service.set_excluded(session, project_id=project_id, user_id=user_id, excluded=False)
    return Response(status_code=204)
