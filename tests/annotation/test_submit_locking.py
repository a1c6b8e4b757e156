"""Row locks between a submit in flight and other annotators (PostgreSQL; SQLite serialises
writing transactions, so they cannot overlap there).

A submit locks its own lease first and the shared rows (the task, the samples' Elo) only for
its last statements. These tests hold one transaction open at a chosen point and check what a
second one does meanwhile, with a lock timeout so a wait fails the test instead of hanging.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation import repository, service
from app.annotation.schemas import SubmitRanking
from app.models import Assignment, AssignmentState, Project, RankingTask, TaskStatus, User
from tests.annotation.conftest import make_member
from tests.conftest import BACKEND
from tests.factories import make_project, make_task

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(BACKEND != "postgresql", reason="row locks between open transactions"),
]


def _one_task(session: Session, *, required: int) -> tuple[Project, RankingTask, User, User]:
    project = make_project(session, samples_per_prompt=4, annotations_per_task=required)
    task = make_task(session, project)
    first, second = make_member(session, project), make_member(session, project)
    session.commit()
    return project, task, first, second


def _lease_until(session: Session, project: Project, task: RankingTask, user: User) -> datetime:
    """Lease the project's task to the user, committed; when the lease expires."""
    assert service.next_task(session, user_id=user.id, chosen_project_id=project.id).task
    session.commit()
    return session.scalars(
        select(Assignment.expires_at).where(
            Assignment.task_id == task.id, Assignment.user_id == user.id
        )
    ).one()


def _groups(session: Session, task: RankingTask) -> list[list[int]]:
    return [[sample_id] for sample_id, _, _ in repository.task_samples(session, task.id)]


def test_submits_of_one_task_by_two_annotators_both_count(
    sessions: tuple[Session, Session],
) -> None:
    a, b = sessions
    project, task, first, second = _one_task(a, required=2)
    for user in (first, second):
        assert service.next_task(a, user_id=user.id, chosen_project_id=project.id).task
    a.commit()
    groups = _groups(a, task)

    service.submit_ranking(
        a, task_id=task.id, user_id=first.id, submission=SubmitRanking(groups=groups)
    )
    a.commit()
    out = service.submit_ranking(
        b, task_id=task.id, user_id=second.id, submission=SubmitRanking(groups=groups)
    )
    b.commit()

    assert out.task_complete
    a.expire_all()
    done, status = a.execute(
        select(RankingTask.annotations_done, RankingTask.status).where(RankingTask.id == task.id)
    ).one()
    assert (done, status) == (2, TaskStatus.complete)


def test_a_lease_expiring_while_its_submit_runs_is_not_given_away(
    sessions: tuple[Session, Session],
) -> None:
    """The submit checked the lease in time; a leaser that sees it expired a moment later
    must neither wait for the submit (it skips the locked lease) nor hand its slot out."""
    submitting, leasing = sessions
    project, task, holder, other = _one_task(submitting, required=1)
    expires_at = _lease_until(submitting, project, task, holder)
    groups = _groups(submitting, task)

    in_flight = repository.lock_own_lease(submitting, task_id=task.id, user_id=holder.id)
    assert in_flight is not None  # the holder's submit has locked and checked its lease

    after_expiry = expires_at + timedelta(seconds=1)
    offered = service.next_task(
        leasing, user_id=other.id, chosen_project_id=project.id, now=after_expiry
    )
    leasing.commit()
    assert offered.task is None

    submitting.rollback()  # the submit runs from the start, its lease checked before expiry
    out = service.submit_ranking(
        submitting,
        task_id=task.id,
        user_id=holder.id,
        submission=SubmitRanking(groups=groups),
        now=expires_at - timedelta(seconds=1),
    )
    submitting.commit()
    assert out.task_complete
    live = submitting.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.task_id == task.id, Assignment.state == AssignmentState.leased)
    )
    assert live == 0


def test_a_lease_that_expired_unused_returns_its_slot(
    sessions: tuple[Session, Session],
) -> None:
    first_session, _ = sessions
    project, task, holder, other = _one_task(first_session, required=1)
    expires_at = _lease_until(first_session, project, task, holder)

    offered = service.next_task(
        first_session,
        user_id=other.id,
        chosen_project_id=project.id,
        now=expires_at + timedelta(seconds=1),
    )
    first_session.commit()

    assert offered.task is not None
    assert offered.task.id == task.id
    states = set(
        first_session.scalars(select(Assignment.state).where(Assignment.task_id == task.id))
    )
    assert states == {AssignmentState.expired, AssignmentState.leased}


@pytest.mark.parametrize("required", [1, 2])
def test_a_second_tab_asking_while_the_first_submits_an_expiring_lease_does_not_wait(
    sessions: tuple[Session, Session], required: int
) -> None:
    """Tab 1's submit holds its lease (checked in time); tab 2's next-task, a moment after
    expiry, would mark that lease expired. Waiting for it there, while tab 1's page then waits
    for the user's lock tab 2 holds, would deadlock: tab 2 skips it instead. With a second
    slot free, tab 2 must not lease the task again for the same user either: that insert
    would wait on tab 1's lease row while holding the task tab 1's submit needs next."""
    tab1, tab2 = sessions
    project, task, user, _ = _one_task(tab1, required=required)
    expires_at = _lease_until(tab1, project, task, user)
    assert repository.lock_own_lease(tab1, task_id=task.id, user_id=user.id) is not None

    offered = service.next_task(
        tab2, user_id=user.id, chosen_project_id=project.id, now=expires_at + timedelta(seconds=1)
    )
    tab2.commit()

    assert offered.task is None  # the slot is the submit's until it ends
    tab1.rollback()
