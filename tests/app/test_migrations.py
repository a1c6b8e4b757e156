"""Migrations apply to an empty database, match the models exactly, and downgrade to base."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import app.models  # noqa: F401
from app import migrate
from app.db import Base, make_engine
from tests.conftest import _new_database_url, create_database

pytestmark = pytest.mark.db


def _assert_flush_refused(session: Session, obj: object) -> None:
    nested = session.begin_nested()
    session.add(obj)
    with pytest.raises(IntegrityError):
        session.flush()
    nested.rollback()


@pytest.fixture
def empty_database_url() -> str:
    url = _new_database_url("migrations")
    create_database(url)
    return url


def test_migrations_upgrade_match_models_and_downgrade(empty_database_url: str) -> None:
    migrate.upgrade("head", database_url=empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables

        migrate.downgrade("base", database_url=empty_database_url)
        remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
    finally:
        engine.dispose()


def test_database_enforces_one_ranking_per_task_and_annotator(db_session: Session) -> None:
    from app.models import Ranking
    from tests.factories import make_project, make_task, make_user

    project = make_project(db_session)
    task = make_task(db_session, project)
    user = make_user(db_session)
    db_session.add(Ranking(project_id=project.id, task_id=task.id, user_id=user.id, groups=[]))
    db_session.flush()
    _assert_flush_refused(
        db_session, Ranking(project_id=project.id, task_id=task.id, user_id=user.id, groups=[])
    )


def test_database_enforces_one_open_lease_per_task_and_annotator(db_session: Session) -> None:
    from datetime import timedelta

    from app.db import utcnow
    from app.models import Assignment, AssignmentState
    from tests.factories import make_project, make_task, make_user

    project = make_project(db_session)
    task = make_task(db_session, project)
    user = make_user(db_session)
    later = utcnow() + timedelta(minutes=5)
    db_session.add(Assignment(task_id=task.id, user_id=user.id, expires_at=later))
    db_session.add(
        Assignment(
            task_id=task.id, user_id=user.id, expires_at=later, state=AssignmentState.skipped
        )
    )
    db_session.flush()  # a closed assignment beside the open lease is fine
    _assert_flush_refused(
        db_session, Assignment(task_id=task.id, user_id=user.id, expires_at=later)
    )


def test_database_enforces_sample_once_per_task(db_session: Session) -> None:
    from app.models import TaskSample
    from tests.factories import make_project, make_task

    project = make_project(db_session)
    task = make_task(db_session, project)
    first = db_session.scalars(select(TaskSample).where(TaskSample.task_id == task.id)).first()
    assert first is not None
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.execute(
            TaskSample.__table__.insert().values(
                task_id=task.id, sample_id=first.sample_id, position=99
            )
        )


def test_database_refuses_second_active_round(db_session: Session) -> None:
    from app.models import RoundState, RoundType, TrainingRound
    from tests.factories import make_project

    project = make_project(db_session)
    db_session.add(TrainingRound(project_id=project.id, number=1, type=RoundType.reward_ppo))
    db_session.add(
        TrainingRound(project_id=project.id, number=2, type=RoundType.dpo, state=RoundState.failed)
    )
    db_session.flush()
    _assert_flush_refused(
        db_session, TrainingRound(project_id=project.id, number=3, type=RoundType.sft)
    )
