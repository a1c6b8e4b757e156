"""Rankings and their comparisons written the way the annotation service writes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Ranking, RankingTask
from tests.factories import add_comparisons


def add_ranking(
    session: Session,
    task: RankingTask,
    user_id: int,
    groups: list[list[int]],
    *,
    created_at: datetime | None = None,
    none_usable: bool = False,
) -> Ranking:
    created_at = created_at or utcnow()
    ranking = Ranking(
        project_id=task.project_id,
        task_id=task.id,
        user_id=user_id,
        groups=[] if none_usable else groups,
        display_order=[sid for group in groups for sid in group],
        none_usable=none_usable,
        none_usable_reason="all off-topic" if none_usable else None,
        created_at=created_at,
    )
    session.add(ranking)
    session.flush()
    if none_usable:
        return ranking
    add_comparisons(session, ranking, task, created_at=created_at)
    session.flush()
    return ranking
