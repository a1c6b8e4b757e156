"""A cancel ends a round cancelled only when the stage stops for it (TrainingCancelled from a
trainer, RoundCancelled from the stage); any other error fails the round, cancel or not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.models import RoundState, TrainingRound
from app.rounds import service
from app.rounds.service import StageStart
from tests.conftest import FreshDatabase
from tests.factories import make_project, make_round
from worker.jobs import rounds as round_jobs
from worker.jobs.rounds import StageReporter
from worker.training.outcomes import TrainingCancelled


def _stage_cancelled_then(
    db: FreshDatabase, monkeypatch: pytest.MonkeyPatch, error: Callable[[], Exception]
) -> int:
    """A round whose policy stage sees the admin's cancel at its first step, then raises."""
    with db.session() as session:
        round_id = make_round(session, make_project(session), "sft").id
        session.commit()

    def stage(start: StageStart, reporter: StageReporter) -> None:
        with db.session() as session:
            service.cancel_round(session, round_id=start.round_id)
            session.commit()
        reporter.progress(1, 4, force=True)
        assert reporter.should_stop()
        raise error()

    monkeypatch.setitem(round_jobs.STAGES, "policy", stage)
    return round_id


def _state(db: FreshDatabase, round_id: int) -> RoundState:
    with db.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        return ended.state


def test_a_trainer_stopping_for_a_cancel_ends_the_round_cancelled(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    round_id = _stage_cancelled_then(
        app_database, monkeypatch, lambda: TrainingCancelled("stopped at step 1 of 4")
    )

    assert round_jobs.run_stage(round_id, "policy") is None

    assert _state(app_database, round_id) == RoundState.cancelled


def test_another_error_after_a_cancel_fails_the_round(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    round_id = _stage_cancelled_then(
        app_database, monkeypatch, lambda: RuntimeError("the disk is full")
    )

    with pytest.raises(RuntimeError, match="the disk is full"):
        round_jobs.run_stage(round_id, "policy")

    assert _state(app_database, round_id) == RoundState.failed
