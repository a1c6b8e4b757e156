"""Row locks of gold tasks between open transactions (PostgreSQL; SQLite serialises writers).

Gold leases take FOR KEY SHARE, so annotators lease one gold task at once; marking or
unmarking takes FOR UPDATE, so a submit in flight either finishes first or follows the mark.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.annotation import repository, service
from app.annotation.schemas import SubmitRanking
from app.gold import service as gold
from app.models import Comparison, Project, RankingTask
from tests.annotation.conftest import make_member
from tests.conftest import BACKEND, FreshDatabase, wait_until
from tests.factories import make_project, make_task, task_sample_ids

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(BACKEND != "postgresql", reason="row locks between open transactions"),
]


def _gold_project(session: Session) -> tuple[Project, RankingTask]:
    project = make_project(session, samples_per_prompt=4, annotations_per_task=1)
    task = make_task(session, project)
    gold.mark_gold(
        session,
        project_id=project.id,
        task_id=task.id,
        groups=[[i] for i in task_sample_ids(session, task)],
    )
    return project, task


def test_two_annotators_lease_one_gold_task_at_the_same_time(
    sessions: tuple[Session, Session],
) -> None:
    a, b = sessions
    project, task = _gold_project(a)
    first, second = make_member(a, project), make_member(a, project)
    a.commit()

    # a's lease stays uncommitted while b leases: b neither waits nor skips the task
    assert repository.lock_gold_candidate(a, project_id=project.id, user_id=first.id) == task.id
    assert repository.lock_gold_candidate(b, project_id=project.id, user_id=second.id) == task.id
    a.rollback()
    b.rollback()


def test_a_submit_waiting_on_a_mark_gold_follows_it(
    sessions: tuple[Session, Session], fresh_database: FreshDatabase
) -> None:
    """The submit read the task as ordinary; the mark committed meanwhile: its comparisons
    must come out gold, or they would reach training data."""
    a, b = sessions
    project = make_project(a, samples_per_prompt=4, annotations_per_task=1, gold_rate=0.0)
    task = make_task(a, project)
    user = make_member(a, project)
    a.commit()
    shown = service.next_task(b, user_id=user.id, chosen_project_id=project.id).task
    assert shown is not None
    b.commit()
    groups = [[sample.id] for sample in shown.samples]

    gold.mark_gold(a, project_id=project.id, task_id=task.id, bad_sample_id=groups[-1][0])
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            service.submit_ranking(
                b, task_id=task.id, user_id=user.id, submission=SubmitRanking(groups=groups)
            )
            b.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=submit)
    thread.start()
    # the submit waits on the mark's lock (autocommit: each look at pg_stat_activity is fresh)
    with fresh_database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:

        def waiting() -> bool:
            return bool(
                watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
            )

        wait_until(waiting, 10, "the submit to wait on the mark")
    a.commit()
    thread.join(30)
    assert not errors, errors

    with fresh_database.session() as check:
        flags = set(check.scalars(select(Comparison.gold).where(Comparison.task_id == task.id)))
        stored = check.get(RankingTask, task.id)
        assert stored is not None
        assert flags == {True}
        assert stored.gold
        assert stored.status.value == "open"
