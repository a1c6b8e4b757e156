"""GET /api/v1/projects/{id}/leaderboard: the stored ratings of a project's policy versions."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND, IdPath
from app.deps import SessionDep
from app.ratings import service
from app.ratings.schemas import LeaderboardOut

router = APIRouter(
    tags=["ratings"], route_class=ApiRoute, responses={**AUTH_RESPONSES, **NOT_FOUND}
)


@router.get(
    "/projects/{project_id}/leaderboard",
    summary="Leaderboard of policy versions",
    description="Bradley-Terry ratings with 95% intervals (bootstrap over rankings), "
    "comparisons, win rate and verdict against the previous version. Recomputed in the "
    "background a few seconds after new rankings (`recompute_pending` says one is due).",
)
def get_leaderboard(session: SessionDep, token: ReadToken, project_id: IdPath) -> LeaderboardOut:
    return service.leaderboard(session, project_id=project_id)
