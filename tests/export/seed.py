"""Rankings and their comparisons written the way the annotation service writes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Comparison, Ranking, RankingTask, Sample
from app.ratings.pairs import ranking_to_pairs
from tests.factories import task_sample_ids  # noqa: F401  (tests/export/conftest.py imports it here)


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
    version_of = dict(
        session.execute(
            select(Sample.id, Sample.policy_version_id).where(
                Sample.id.in_([sid for group in groups for sid in group])
            )
        ).all()
    )
    session.add_all(
        Comparison(
            project_id=task.project_id,
            ranking_id=ranking.id,
            task_id=task.id,
            prompt_id=task.prompt_id,
            user_id=user_id,
            winner_id=pair.winner,
            loser_id=pair.loser,
            winner_version_id=version_of[pair.winner],
            loser_version_id=version_of[pair.loser],
            tie=pair.tie,
            created_at=created_at,
        )
        for pair in ranking_to_pairs(groups)
    )
    session.flush()
    return ranking
