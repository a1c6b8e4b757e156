"""Rounds through a real Celery worker (embedded broker on SQLite runs, Redis on PostgreSQL)."""

from __future__ import annotations

import subprocess

from sqlalchemy import func, select

from app.models import PolicyVersion, RoundState, TrainingRound
from app.projects.service import add_prompts
from app.rounds import service
from tests.conftest import FreshDatabase, wait_until
from tests.factories import make_project


def _state(db: FreshDatabase, round_id: int) -> TrainingRound:
    with db.session() as session:
        training_round = session.get(TrainingRound, round_id)
        assert training_round is not None
        return training_round


def test_a_round_whose_stage_raises_ends_failed_with_the_error_and_no_version(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes]
) -> None:
    with app_database.session() as session:
        project = make_project(session)
        add_prompts(session, project_id=project.id, contents=[f"Q{i}?" for i in range(6)])
        training_round = service.start_round(
            session, project_id=project.id, round_type="reward_ppo"
        )
        session.commit()  # the stage is sent to the worker after this commit
        round_id, project_id = training_round.id, project.id

    wait_until(lambda: _state(app_database, round_id).state.is_terminal, 120, "the round")
    ended = _state(app_database, round_id)
    assert ended.state == RoundState.failed
    assert "needs rankings" in (ended.error or "")
    assert ended.finished_at is not None
    with app_database.session() as session:
        versions = session.scalar(
            select(func.count()).where(PolicyVersion.project_id == project_id)
        )
        assert versions == 1  # only the base version
    assert worker_process.poll() is None


def test_a_cancelled_round_never_runs_its_stages(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes]
) -> None:
    with app_database.session() as session:
        project = make_project(session)
        add_prompts(session, project_id=project.id, contents=[f"Q{i}?" for i in range(6)])
        cancelled = service.start_round(session, project_id=project.id, round_type="reward_ppo")
        service.cancel_round(session, round_id=cancelled.id)
        session.commit()
        # The project is free again; the worker takes messages in order, so once this second
        # round has ended, the cancelled round's message has been consumed too.
        second = service.start_round(session, project_id=project.id, round_type="reward_ppo")
        session.commit()
        cancelled_id, second_id = cancelled.id, second.id
    wait_until(lambda: _state(app_database, second_id).state.is_terminal, 120, "round 2")
    ended = _state(app_database, cancelled_id)
    assert ended.state == RoundState.cancelled
    assert ended.started_at is None
    assert _state(app_database, second_id).started_at is not None
