"""Gold tasks in the queue: mixed in at the gold rate, once per annotator, never complete."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation import service as annotation
from app.annotation.schemas import SubmitRanking
from app.gold import service as gold
from app.models import Project, RankingTask, TaskStatus, User
from app.projects import repository as projects_repo
from app.sampling import repository as sampling_repo
from tests.annotation.conftest import make_member
from tests.factories import make_project, make_task, task_sample_ids


def _gold_task(session: Session, project: Project) -> RankingTask:
    task = make_task(session, project)
    ids = task_sample_ids(session, task)
    gold.mark_gold(session, project_id=project.id, task_id=task.id, groups=[[i] for i in ids])
    return task


def _lease(session: Session, user: User, project: Project) -> int | None:
    out = annotation.next_task(session, user_id=user.id, chosen_project_id=project.id)
    return out.task.id if out.task else None


def _submit(session: Session, user: User, task_id: int) -> None:
    view = annotation.next_task(session, user_id=user.id, chosen_project_id=None)
    assert view.task is not None
    assert view.task.id == task_id
    groups = [[sample.id] for sample in view.task.samples]
    annotation.submit_ranking(
        session, task_id=task_id, user_id=user.id, submission=SubmitRanking(groups=groups)
    )


@given(st.floats(0.05, 0.5), st.integers(1, 10_000))
def test_the_gold_draw_is_a_pure_function_of_user_and_lease_number(
    rate: float, user_id: int
) -> None:
    draws = [gold_draw(user_id, n, rate) for n in range(50)]
    assert draws == [gold_draw(user_id, n, rate) for n in range(50)]


def gold_draw(user_id: int, n: int, rate: float) -> bool:
    return annotation.gold_draw(user_id=user_id, lease_number=n, rate=rate)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_the_gold_share_of_2000_draws_is_within_three_points_of_the_rate(rate: float) -> None:
    """10 annotators × 200 leases: binomial sd at 0.5 is 1.1 points; the band is 3 points."""
    draws = [gold_draw(user_id, n, rate) for user_id in range(1, 11) for n in range(200)]
    assert abs(sum(draws) / len(draws) - rate) < 0.03


def test_a_zero_rate_never_draws_gold() -> None:
    assert not any(gold_draw(7, n, 0.0) for n in range(500))


def test_gold_leases_over_200_leases_come_at_the_gold_rate(db_session: Session) -> None:
    """One annotator, 200 leases (each skipped), enough gold tasks never to run out: the share
    of gold leases is the draw's, exactly (deterministic), and within 0.06 of the rate."""
    project = make_project(db_session, annotations_per_task=1, gold_rate=0.2)
    user = make_member(db_session, project)
    gold_ids = {_gold_task(db_session, project).id for _ in range(70)}
    for _ in range(200):
        make_task(db_session, project)
    expected = sum(gold_draw(user.id, n, 0.2) for n in range(200))

    leased = []
    for _ in range(200):
        task_id = _lease(db_session, user, project)
        assert task_id is not None
        leased.append(task_id)
        annotation.skip_task(db_session, task_id=task_id, user_id=user.id)

    gold_leases = [t for t in leased if t in gold_ids]
    assert len(gold_leases) == expected
    assert abs(len(gold_leases) / 200 - 0.2) < 0.06
    assert len(set(gold_leases)) == len(gold_leases)  # each gold task at most once


def test_each_annotator_gets_a_gold_task_at_most_once_then_the_usual_queue(
    db_session: Session,
) -> None:
    project = make_project(db_session, annotations_per_task=1, gold_rate=0.5)
    gold_task = _gold_task(db_session, project)
    normal = [make_task(db_session, project) for _ in range(30)]
    user = make_member(db_session, project)

    leased = []
    for _ in range(20):
        task_id = _lease(db_session, user, project)
        assert task_id is not None
        leased.append(task_id)
        _submit(db_session, user, task_id)

    assert leased.count(gold_task.id) == 1
    assert set(leased) - {gold_task.id} <= {t.id for t in normal}


def test_the_normal_queue_never_leases_a_gold_task(db_session: Session) -> None:
    project = make_project(db_session, gold_rate=0.0)
    _gold_task(db_session, project)
    user = make_member(db_session, project)

    assert _lease(db_session, user, project) is None


def test_a_gold_task_never_completes_and_every_annotator_ranks_it(db_session: Session) -> None:
    """With annotations_per_task=1, a normal task would close after the first ranking."""
    project = make_project(db_session, annotations_per_task=1, gold_rate=0.5)
    gold_task = _gold_task(db_session, project)
    for _ in range(60):
        make_task(db_session, project)
    users = [make_member(db_session, project) for _ in range(6)]
    for user in users:
        for _ in range(30):  # skip ordinary tasks until the draw brings the gold one
            task_id = _lease(db_session, user, project)
            assert task_id is not None
            if task_id == gold_task.id:
                _submit(db_session, user, task_id)
                break
            annotation.skip_task(db_session, task_id=task_id, user_id=user.id)

    db_session.refresh(gold_task)
    assert gold_task.annotations_done == len(users)
    assert gold_task.status == TaskStatus.open
    assert gold_task.completed_at is None


def test_gold_tasks_do_not_count_as_open_tasks_or_progress(db_session: Session) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    _gold_task(db_session, project)

    assert sampling_repo.count_open_tasks(db_session, project.id) == 1
    assert projects_repo.task_counts(db_session, project.id) == {TaskStatus.open: 1}
    assert projects_repo.annotation_totals(db_session, project.id) == (
        0,
        project.annotations_per_task,
    )


def test_skipping_a_gold_task_frees_nothing_and_it_is_not_offered_again(
    db_session: Session,
) -> None:
    project = make_project(db_session, annotations_per_task=1, gold_rate=0.5)
    gold_task = _gold_task(db_session, project)
    user = make_member(db_session, project)
    for _ in range(40):
        make_task(db_session, project)

    seen = []
    for _ in range(30):
        task_id = _lease(db_session, user, project)
        assert task_id is not None
        seen.append(task_id)
        annotation.skip_task(db_session, task_id=task_id, user_id=user.id)

    assert seen.count(gold_task.id) == 1
    statuses = db_session.scalars(
        select(RankingTask.status).where(RankingTask.id == gold_task.id)
    ).all()
    assert statuses == [TaskStatus.open]
