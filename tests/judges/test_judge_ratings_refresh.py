"""The judging job refreshes the ratings after judge rankings exactly when the project counts
judges in its human figures: the project is marked dirty and the debounced recompute lands on
the run's broker (filesystem on SQLite, Redis on PostgreSQL), as after a person's submit."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.gold import service as gold
from app.health import queue_lengths
from app.models import Project, RankingTask
from tests.factories import task_sample_ids
from tests.judges.test_judging_job import add_judge, project_with_tasks
from worker.jobs.judging import run_judge

pytestmark = pytest.mark.usefixtures("app_database")


def _dirty_since(project_id: int) -> object:
    with session_scope(readonly=True) as session:
        return session.get_one(Project, project_id).ratings_dirty_since


def _project(*, counted_in: bool, tasks: int = 2) -> tuple[int, list[int]]:
    project_id, task_ids = project_with_tasks(tasks)
    with session_scope() as session:
        session.get_one(Project, project_id).judges_in_human_figures = counted_in
    return project_id, task_ids


def test_judge_rankings_counted_as_people_mark_the_ratings_and_send_the_recompute() -> None:
    project_id, _ = _project(counted_in=True)
    judge_id = add_judge(project_id)
    before = queue_lengths()["sampling"]
    assert before is not None

    report = run_judge(judge_id)

    assert report.ranked == 2
    assert _dirty_since(project_id) is not None
    after = queue_lengths()["sampling"]
    assert after is not None
    assert after >= before + 1  # ratings.recompute routes to 'sampling'


def test_judge_rankings_not_counted_leave_the_ratings_alone() -> None:
    project_id, _ = _project(counted_in=False)
    judge_id = add_judge(project_id)

    report = run_judge(judge_id)

    assert report.ranked == 2
    assert _dirty_since(project_id) is None


def test_a_judge_ranking_of_a_gold_task_never_marks_the_ratings() -> None:
    project_id, [task_id] = _project(counted_in=True, tasks=1)
    with session_scope() as session:
        task = session.get_one(RankingTask, task_id)
        order = [[sample_id] for sample_id in task_sample_ids(session, task)]
        gold.mark_gold(session, project_id=project_id, task_id=task_id, groups=order)
    judge_id = add_judge(project_id)

    report = run_judge(judge_id)

    assert report.ranked == 1  # judges are measured on gold tasks too
    assert _dirty_since(project_id) is None
