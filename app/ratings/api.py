"""GET /api/v1/projects/{id}/leaderboard: the stored ratings of a project's policy versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.auth import ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.ratings import position, service
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
def get_leaderboard(session: SessionDep, token: ReadToken, project_id: IdPath) -> LeaderboardOut:
    board = service.leaderboard(session, project_id=project_id)
    return board.model_copy(update={"position_bias": position.position_bias(session, project_id)})
