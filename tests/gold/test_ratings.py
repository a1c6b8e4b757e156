"""Gold rankings never reach version ratings, whether ranked before or after marking."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.gold import service as gold
from app.models import Comparison, Project, RankingTask
from app.ratings import service as ratings
from tests.annotation.conftest import make_member
from tests.export.seed import add_ranking
from tests.factories import (
    base_version,
    make_project,
    make_prompt,
    make_samples,
    make_version,
    task_of,
    task_sample_ids,
)


def _two_version_task(session: Session, project: Project) -> RankingTask:
    prompt = make_prompt(session, project)
    base, other = base_version(session, project), make_version(session, project)
    samples = make_samples(session, prompt, base, ["a1", "a2"])
    samples += make_samples(session, prompt, other, ["b1", "b2"])
    return task_of(session, project, prompt, samples)


def test_version_ratings_never_count_gold_comparisons(db_session: Session) -> None:
    project = make_project(db_session)
    normal, marked_after, marked_before = (_two_version_task(db_session, project) for _ in "abc")
    gold.mark_gold(
        db_session,
        project_id=project.id,
        task_id=marked_before.id,
        bad_sample_id=task_sample_ids(db_session, marked_before)[0],
    )
    user = make_member(db_session, project)
    for task in (normal, marked_after, marked_before):
        add_ranking(db_session, task, user.id, [[i] for i in task_sample_ids(db_session, task)])
    # stored as a submit stores a gold task's ranking (_store_ranking copies task.gold)
    db_session.execute(
        update(Comparison).where(Comparison.task_id == marked_before.id).values(gold=True)
    )
    gold.mark_gold(
        db_session,
        project_id=project.id,
        task_id=marked_after.id,
        groups=[[i] for i in task_sample_ids(db_session, marked_after)],
    )

    summary = ratings.recompute(db_session, project_id=project.id)

    assert summary.comparisons == 6  # the normal task's pairs only
    board = ratings.leaderboard(db_session, project_id=project.id)
    assert {v.comparisons for v in board.versions if v.comparisons} == {4}  # 2×2 cross pairs
