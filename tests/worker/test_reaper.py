"""The reaper runs in the workers, never in a page: a round or sampling job whose worker died
mid-stage is failed with a one-line reason while nobody looks (issue 18, item 13)."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.health import worker_statuses
from app.models import (
    JobState,
    LoginAttempt,
    RoundState,
    RoundType,
    SamplingJob,
    TrainingRound,
    WorkerHeartbeat,
)
from app.projects.service import add_prompts
from app.rounds.repository import active_round
from app.sampling import service as sampling
from tests.conftest import FreshDatabase, purge_queues, start_process, wait_until
from tests.factories import make_project
from worker import reaper

TIMEOUT = 600


@pytest.fixture(autouse=True)
def _no_lease_held(request: pytest.FixtureRequest) -> None:
    """Workers that other tests started (and stopped) may have left the lease to expire."""
    if "db_session" not in request.fixturenames:
        return
    session: Session = request.getfixturevalue("db_session")
    session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == reaper.LEASE_HOSTNAME)
    )
    session.flush()


def _round_in_stage(
    session: Session, stage: str = "policy", round_type: str = "dpo", **fields: object
) -> TrainingRound:
    """A round a worker is running (made directly: the reaper cares for nothing else)."""
    project = make_project(session)
    training_round = TrainingRound(
        project_id=project.id,
        number=1,
        type=RoundType(round_type),
        state=RoundState(stage),
        started_at=utcnow(),
        heartbeat_at=utcnow(),
    )
    session.add(training_round)
    for key, value in fields.items():
        setattr(training_round, key, value)
    session.flush()
    return training_round


def _running_job(session: Session, **fields: object) -> SamplingJob:
    project = make_project(session, min_open_tasks=5)
    add_prompts(session, project_id=project.id, contents=["One?", "Two?", "Three?"])
    job = sampling.top_up_if_needed(session, project_id=project.id)
    assert job is not None
    sampling.begin_job(session, job.id)
    for key, value in fields.items():
        setattr(job, key, value)
    session.flush()
    return job


def test_a_round_whose_worker_died_mid_stage_is_failed_by_the_reaper(
    db_session: Session,
) -> None:
    dead = _round_in_stage(db_session, heartbeat_at=utcnow() - timedelta(seconds=TIMEOUT + 60))
    alive = _round_in_stage(db_session)

    reaped = reaper.run_once(db_session, "worker-a#1", timeout_seconds=TIMEOUT)

    assert reaped is not None
    assert reaped.rounds == [dead.id]
    assert dead.state == RoundState.failed
    assert dead.error == (
        "The worker stopped responding during DPO training (no heartbeat for more than 600 s); "
        "start the round again."
    )
    assert "\n" not in dead.error
    assert alive.state == RoundState.policy
    # The project is free again: a new round may start (no 409).
    assert active_round(db_session, dead.project_id) is None


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        ("reward_model", "reward model training"),
        ("evaluating", "evaluation"),
        ("sampling", "sampling"),
    ],
)
def test_the_reason_names_the_stage(db_session: Session, stage: str, name: str) -> None:
    training_round = _round_in_stage(
        db_session, stage, "reward_ppo", heartbeat_at=utcnow() - timedelta(hours=1)
    )

    reaper.run_once(db_session, "worker-a#1", timeout_seconds=TIMEOUT)

    assert (training_round.error or "").startswith(f"The worker stopped responding during {name} (")


def test_a_sampling_job_whose_worker_died_is_failed_by_the_reaper(db_session: Session) -> None:
    dead = _running_job(
        db_session, heartbeat_at=utcnow() - timedelta(seconds=TIMEOUT + 60), prompts_done=1
    )
    alive = _running_job(db_session)
    queued = sampling.top_up_if_needed(
        db_session, project_id=make_project(db_session, min_open_tasks=5).id
    )  # no prompts: nothing to sample
    assert queued is None

    reaped = reaper.run_once(db_session, "worker-a#1", timeout_seconds=TIMEOUT)

    assert reaped is not None
    assert reaped.sampling_jobs == [dead.id]
    assert reaped.projects_to_top_up == [dead.project_id]
    assert dead.state == JobState.failed
    assert dead.error == (
        "The worker stopped responding during sampling (no heartbeat for more than 600 s) "
        "after 1 of 3 prompts; the prompts it did not reach are sampled by the next job."
    )
    assert alive.state == JobState.running


def test_the_reaper_forgets_failed_logins_older_than_the_rate_limit_window(
    db_session: Session,
) -> None:
    old = utcnow() - timedelta(days=2)
    db_session.add_all(
        [
            LoginAttempt(username="admin", client_address="10.0.0.1", attempted_at=old),
            LoginAttempt(username="admin", client_address="10.0.0.2"),
        ]
    )
    db_session.flush()

    assert reaper.run_once(db_session, "worker-a#1", timeout_seconds=TIMEOUT) is not None

    left = db_session.scalars(select(LoginAttempt.client_address)).all()
    assert left == ["10.0.0.2"]


def test_one_worker_at_a_time_holds_the_lease(db_session: Session) -> None:
    now = utcnow()
    assert reaper.take_lease(db_session, "worker-a#1", now=now)
    assert not reaper.take_lease(db_session, "worker-b#2", now=now + timedelta(seconds=5))
    assert reaper.run_once(db_session, "worker-b#2", timeout_seconds=TIMEOUT) is None
    assert reaper.take_lease(db_session, "worker-a#1", now=now + timedelta(seconds=60))  # renews
    later = now + timedelta(seconds=60 + reaper.LEASE_SECONDS + 1)
    assert reaper.take_lease(db_session, "worker-b#2", now=later)  # a was silent: b takes over
    assert not reaper.take_lease(db_session, "worker-a#1", now=later)
    reaper.release_lease(db_session, "worker-b#2")
    assert reaper.take_lease(db_session, "worker-a#1", now=later)  # released: free at once
    # The lease row is no worker: the worker list leaves it out.
    assert db_session.get(WorkerHeartbeat, reaper.LEASE_HOSTNAME) is not None
    assert reaper.LEASE_HOSTNAME not in {w.hostname for w in worker_statuses(db_session)}


_KILLED_WORKER = """
import sys, time
from app.db import session_scope
from app.rounds import service as rounds
from app.sampling import service as sampling
round_id, job_id, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with session_scope() as session:
    rounds.begin_stage(session, round_id, "policy")
    sampling.begin_job(session, job_id)
open(marker, "w").close()
time.sleep(600)  # mid-stage, until killed
"""


@pytest.mark.db
def test_a_worker_reaps_what_a_killed_worker_left_running_with_no_page_open(
    fresh_database: FreshDatabase, tmp_path: Path
) -> None:
    """A process begins a round's stage and a sampling job, then is killed (SIGKILL: no
    cleanup). A `rankloop worker` started later fails both on its own."""
    with fresh_database.session() as session:
        training_round = _round_in_stage(session, "queued", heartbeat_at=None, started_at=None)
        other = make_project(session, min_open_tasks=5)
        add_prompts(session, project_id=other.id, contents=["One?", "Two?"])
        job = sampling.top_up_if_needed(session, project_id=other.id)
        assert job is not None
        session.commit()
        round_id, job_id = training_round.id, job.id

    env = {
        **os.environ,
        "RANKLOOP_DATABASE_URL": fresh_database.url,
        "RANKLOOP_DATA_DIR": str(tmp_path / "data"),
        "RANKLOOP_HEARTBEAT_TIMEOUT_SECONDS": "2",
    }
    marker = tmp_path / "mid-stage"
    doomed = start_process(
        [sys.executable, "-c", _KILLED_WORKER, str(round_id), str(job_id), str(marker)],
        env,
        tmp_path / "doomed.log",
    )
    try:
        wait_until(lambda: marker.exists() or doomed.poll() is not None, 60, "the doomed worker")
        assert marker.exists(), (tmp_path / "doomed.log").read_text()
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)

    def states() -> tuple[RoundState, JobState]:
        with fresh_database.session() as session:
            found_round = session.get(TrainingRound, round_id)
            found_job = session.get(SamplingJob, job_id)
            assert found_round is not None
            assert found_job is not None
            return found_round.state, found_job.state

    assert states() == (RoundState.policy, JobState.running)  # left running by the dead worker
    time.sleep(2.5)  # past the (shortened) heartbeat timeout

    purge_queues(env)
    log = tmp_path / "worker.log"
    worker = start_process(
        [sys.executable, "-m", "rankloop.cli", "worker", "--queues", "training"], env, log
    )
    try:
        wait_until(
            lambda: states()[0] == RoundState.failed and states()[1] == JobState.failed,
            90,
            "the worker's reaper to fail the dead round and job",
        )
    except TimeoutError:
        raise AssertionError(log.read_text()) from None
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        purge_queues(env)  # the reaper asked for a top-up nobody here consumes

    with fresh_database.session() as session:
        found_round = session.get(TrainingRound, round_id)
        found_job = session.get(SamplingJob, job_id)
        assert found_round is not None
        assert found_job is not None
        assert found_round.error == (
            "The worker stopped responding during DPO training (no heartbeat for more than 2 s); "
            "start the round again."
        )
        assert (found_job.error or "").startswith("The worker stopped responding during sampling")
        lease = session.scalar(
            select(WorkerHeartbeat).where(WorkerHeartbeat.hostname == reaper.LEASE_HOSTNAME)
        )
        assert lease is not None
