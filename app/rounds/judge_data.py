"""The round settings that say whether judge (AI) rankings train the round's models.

Shared by the round types that train on rankings (reward model rounds, DPO); blank means the
project's settings (`Project.judge_weight`, `Project.judge_only`), read when the snapshot is
taken (`app.rounds.snapshots.judge_data`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from app.rounds.schemas import StrictModel


class JudgeDataSettings(StrictModel):
    judge_weight: Annotated[
        float | None,
        Field(
            ge=0,
            le=10,
            description="Weight of each judge (AI) comparison in this round's training data; "
            "0 leaves them out (blank: the project's).",
        ),
    ] = None
    judge_only: Annotated[
        bool | None,
        Field(
            description="Train on judge rankings only, each weighing 1: pure RLAIF "
            "(blank: the project's).",
        ),
    ] = None


def judge_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """The stored round config's judge settings, as `create_snapshot` keyword arguments."""
    return {"judge_weight": config.get("judge_weight"), "judge_only": config.get("judge_only")}
