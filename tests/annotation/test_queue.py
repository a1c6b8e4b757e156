"""The task queue: who gets which task, leases, expiry, skips (service calls, rolled back)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation import service
from app.annotation.schemas import SubmitRanking
from app.db import utcnow
from app.errors import Forbidden
from app.models import Assignment, AssignmentState, Project, TaskStatus, User, WebSession
from app.projects import service as projects
from tests.annotation.conftest import make_member
from tests.factories import make_project, make_ranking, make_task, task_sample_ids


def lease(session: Session, user: User, project: Project, **kwargs: object) -> int | None:
    out = service.next_task(session, user_id=user.id, chosen_project_id=project.id, **kwargs)
    return out.task.id if out.task else None


def assignments(session: Session, user: User) -> list[Assignment]:
    session.expire_all()
    return list(
        session.scalars(
            select(Assignment).where(Assignment.user_id == user.id).order_by(Assignment.id)
        )
    )


def test_next_task_leases_the_oldest_open_task_for_the_lease_time(db_session: Session) -> None:
    project = make_project(db_session, lease_minutes=20)
    first, _second = make_task(db_session, project), make_task(db_session, project)
    user = make_member(db_session, project)
    now = utcnow()

    out = service.next_task(db_session, user_id=user.id, chosen_project_id=project.id, now=now)

    assert out.task is not None
    assert out.task.id == first.id
    [assignment] = assignments(db_session, user)
    assert assignment.state == AssignmentState.leased
    assert assignment.expires_at == now + timedelta(minutes=20)
    assert out.task.lease_expires_at == assignment.expires_at


def test_annotators_get_tasks_nobody_works_on_first(db_session: Session) -> None:
    """So a task's annotations arrive at different times instead of three submits at once."""
    project = make_project(db_session, annotations_per_task=3)
    first, second = make_task(db_session, project), make_task(db_session, project)
    a, b, c = (make_member(db_session, project) for _ in range(3))

    assert lease(db_session, a, project) == first.id
    assert lease(db_session, b, project) == second.id
    assert lease(db_session, c, project) == first.id  # none idle: the oldest with a free slot


def test_asking_again_returns_the_open_lease(db_session: Session) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    make_task(db_session, project)
    user = make_member(db_session, project)

    first = lease(db_session, user, project)
    again = lease(db_session, user, project)

    assert again == first
    assert len(assignments(db_session, user)) == 1


def test_a_task_is_never_leased_to_more_annotators_than_it_needs(db_session: Session) -> None:
    project = make_project(db_session, annotations_per_task=2)
    task = make_task(db_session, project)
    a, b, c = (make_member(db_session, project) for _ in range(3))

    assert lease(db_session, a, project) == task.id
    assert lease(db_session, b, project) == task.id
    assert lease(db_session, c, project) is None


def test_an_expired_lease_returns_the_slot_and_is_marked_expired(db_session: Session) -> None:
    project = make_project(db_session, lease_minutes=15)
    task = make_task(db_session, project)
    a, b = make_member(db_session, project), make_member(db_session, project)
    start = utcnow()
    assert lease(db_session, a, project, now=start) == task.id
    assert lease(db_session, b, project, now=start + timedelta(minutes=14)) is None

    assert lease(db_session, b, project, now=start + timedelta(minutes=16)) == task.id

    [expired] = assignments(db_session, a)
    assert expired.state == AssignmentState.expired


def test_an_annotator_meeting_their_own_expired_lease_gets_a_fresh_one(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    user = make_member(db_session, project)
    start = utcnow()
    lease(db_session, user, project, now=start)

    assert lease(db_session, user, project, now=start + timedelta(hours=1)) == task.id

    states = [a.state for a in assignments(db_session, user)]
    assert states == [AssignmentState.expired, AssignmentState.leased]


def test_a_task_the_annotator_ranked_is_not_offered_again(db_session: Session) -> None:
    project = make_project(db_session, annotations_per_task=3)
    task = make_task(db_session, project)
    user = make_member(db_session, project)
    make_ranking(db_session, task, user, [[i] for i in task_sample_ids(db_session, task)])

    assert lease(db_session, user, project) is None


def test_a_skipped_task_is_not_offered_again_and_frees_its_slot(db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    a, b = make_member(db_session, project), make_member(db_session, project)
    lease(db_session, a, project)

    service.skip_task(db_session, task_id=task.id, user_id=a.id)

    assert lease(db_session, a, project) is None
    assert lease(db_session, b, project) == task.id
    db_session.refresh(task)
    assert task.annotations_done == 0


def test_a_none_usable_answer_counts_and_a_skip_does_not(db_session: Session) -> None:
    project = make_project(db_session, annotations_per_task=2)
    task = make_task(db_session, project)
    a, b, c = (make_member(db_session, project) for _ in range(3))
    lease(db_session, a, project)
    service.skip_task(db_session, task_id=task.id, user_id=a.id)
    lease(db_session, b, project)
    service.submit_ranking(
        db_session,
        task_id=task.id,
        user_id=b.id,
        submission=SubmitRanking(none_usable=True, none_usable_reason="all off topic"),
    )
    db_session.refresh(task)
    assert (task.annotations_done, task.status) == (1, TaskStatus.open)

    lease(db_session, c, project)
    service.submit_ranking(
        db_session,
        task_id=task.id,
        user_id=c.id,
        submission=SubmitRanking(groups=[[i] for i in task_sample_ids(db_session, task)]),
    )

    db_session.refresh(task)
    assert (task.annotations_done, task.status) == (2, TaskStatus.complete)
    assert task.completed_at is not None


def test_closed_tasks_and_other_projects_tasks_are_not_offered(db_session: Session) -> None:
    project, other = make_project(db_session), make_project(db_session)
    make_task(db_session, project).status = TaskStatus.cancelled
    make_task(db_session, project).status = TaskStatus.complete
    make_task(db_session, other)
    user = make_member(db_session, project)

    assert lease(db_session, user, project) is None


def test_next_task_asks_for_a_choice_among_several_projects(db_session: Session) -> None:
    one, two = make_project(db_session), make_project(db_session)
    user = make_member(db_session, one, two)

    with pytest.raises(service.ChooseProject):
        service.next_task(db_session, user_id=user.id, chosen_project_id=None)


def test_the_only_project_needs_no_choice(db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    user = make_member(db_session, project)

    out = service.next_task(db_session, user_id=user.id, chosen_project_id=None)

    assert out.task is not None
    assert out.task.id == task.id


def test_a_chosen_project_the_user_left_is_ignored(db_session: Session) -> None:
    left, stayed = make_project(db_session), make_project(db_session)
    make_task(db_session, left)
    task = make_task(db_session, stayed)
    user = make_member(db_session, stayed)

    assert lease(db_session, user, left) == task.id


def test_choosing_a_project_needs_membership(db_session: Session) -> None:
    project = make_project(db_session)
    user = make_member(db_session)
    web_session = WebSession(
        token_hash="x" * 64, user_id=user.id, csrf_token="t", expires_at=utcnow()
    )
    db_session.add(web_session)

    with pytest.raises(Forbidden):
        service.choose_project(
            db_session, web_session=web_session, user_id=user.id, project_id=project.id
        )

    projects.add_member(db_session, project_id=project.id, user_id=user.id)
    service.choose_project(
        db_session, web_session=web_session, user_id=user.id, project_id=project.id
    )
    assert web_session.project_id == project.id


def test_samples_are_shuffled_per_annotator_and_stable(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=9, annotations_per_task=3)
    task = make_task(db_session, project)
    users = [make_member(db_session, project) for _ in range(3)]

    def shown(user: User) -> list[int]:
        out = service.next_task(db_session, user_id=user.id, chosen_project_id=project.id)
        assert out.task is not None
        return [s.id for s in out.task.samples]

    orders = [shown(u) for u in users]

    assert all(sorted(o) == sorted(task_sample_ids(db_session, task)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3
    assert shown(users[0]) == orders[0]
    assert [
        s.number
        for s in service.next_task(
            db_session, user_id=users[0].id, chosen_project_id=project.id
        ).task.samples
    ] == list(range(1, 10))  # type: ignore[union-attr]


def test_the_task_view_carries_no_policy_version(db_session: Session) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    user = make_member(db_session, project)

    out = service.next_task(db_session, user_id=user.id, chosen_project_id=project.id)

    assert out.task is not None
    assert set(out.task.samples[0].model_dump()) == {"id", "number", "text", "suggested_harmful"}
