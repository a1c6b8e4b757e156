"""The reaper: fail training rounds and sampling jobs whose worker died mid-stage.

A running stage or job refreshes its heartbeat as it goes; one silent for longer than
RANKLOOP_HEARTBEAT_TIMEOUT_SECONDS lost its worker (killed, crashed, machine gone), and left
"running" it would block every new round of its project. Every worker's heartbeat thread
(worker/health.py, so the embedded worker of `rankloop demo` too) calls `tick` every
REAP_SECONDS; a lease row lets one worker at a time do the work. Pages never reap: a GET
writes nothing.

Plain functions, callable without Celery (`tick("me")` from a shell does one pass).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope, utcnow
from app.health import LEASE_HOSTNAME
from app.models import JobState, SamplingJob, WorkerHeartbeat

logger = logging.getLogger(__name__)

REAP_SECONDS = 60.0
"""How often a worker tries to reap; a dead worker's round is failed at most this long after
its heartbeat timed out (while some worker runs)."""
LEASE_SECONDS = 3 * REAP_SECONDS
"""A lease its holder stopped renewing (it shut down or died) is taken over after this."""


@dataclass(frozen=True)
class Reaped:
    rounds: list[int] = field(default_factory=list)
    sampling_jobs: list[int] = field(default_factory=list)
    projects_to_top_up: list[int] = field(default_factory=list)
    """Projects of reaped sampling jobs: a new job samples the prompts the dead one missed."""


def holder_name(hostname: str) -> str:
    """Who holds the lease: the worker's name and process (names may repeat across hosts)."""
    return f"{hostname}#{os.getpid()}"[:255]


def take_lease(
    session: Session, holder: str, *, now: datetime | None = None, seconds: float = LEASE_SECONDS
) -> bool:
    """Take or renew the reaper's lease; False while another live holder has it.

    One UPDATE with the condition in its WHERE: on PostgreSQL two workers updating at once
    are serialised on the row and the second finds the lease taken; SQLite writers run one at a
    time anyway."""
    now = now or utcnow()
    taken = session.execute(
        update(WorkerHeartbeat)
        .where(
            WorkerHeartbeat.hostname == LEASE_HOSTNAME,
            or_(
                WorkerHeartbeat.queues == holder,
                WorkerHeartbeat.last_seen_at < now - timedelta(seconds=seconds),
            ),
        )
        .values(queues=holder, last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount:  # type: ignore[attr-defined]
        return True
    exists = session.scalar(
        select(WorkerHeartbeat.hostname).where(WorkerHeartbeat.hostname == LEASE_HOSTNAME)
    )
    if exists is not None:
        return False
    try:  # the first tick ever: create the lease (another worker may race us to it)
        with session.begin_nested():
            session.add(
                WorkerHeartbeat(
                    hostname=LEASE_HOSTNAME, queues=holder, started_at=now, last_seen_at=now
                )
            )
    except IntegrityError:
        return False
    return True


def release_lease(session: Session, holder: str) -> None:
    """On shutdown: let another worker take over at its next tick, not a lease later."""
    session.execute(
        update(WorkerHeartbeat)
        .where(WorkerHeartbeat.hostname == LEASE_HOSTNAME, WorkerHeartbeat.queues == holder)
        .values(last_seen_at=datetime(2000, 1, 1, tzinfo=UTC))
        .execution_options(synchronize_session=False)
    )


def reap_stale_sampling_jobs(session: Session, *, timeout_seconds: int) -> list[SamplingJob]:
    """Fail running sampling jobs whose heartbeat is older than the timeout.

    Rows another transaction holds (a live worker writing its progress) are skipped on
    PostgreSQL, and each job is looked at again under its lock."""
    from app.sampling.service import fail_job

    before = utcnow() - timedelta(seconds=timeout_seconds)
    last_sign = func.coalesce(SamplingJob.heartbeat_at, SamplingJob.created_at)
    stale = list(
        session.scalars(
            select(SamplingJob)
            .where(SamplingJob.state == JobState.running, last_sign < before)
            .order_by(SamplingJob.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )
    for job in stale:
        fail_job(
            session,
            job.id,
            f"The worker stopped responding during sampling (no heartbeat for more than "
            f"{timeout_seconds} s) after {job.prompts_done} of {job.prompts_total} prompts; "
            "the prompts it did not reach are sampled by the next job.",
        )
    return stale


def reap(session: Session, *, timeout_seconds: int) -> Reaped:
    """One pass over rounds and sampling jobs (the caller holds the lease)."""
    from app.rounds.service import reap_stale_rounds

    rounds = reap_stale_rounds(session, timeout_seconds=timeout_seconds)
    jobs = reap_stale_sampling_jobs(session, timeout_seconds=timeout_seconds)
    return Reaped(
        rounds=rounds,
        sampling_jobs=[job.id for job in jobs],
        projects_to_top_up=sorted({job.project_id for job in jobs}),
    )


def run_once(session: Session, holder: str, *, timeout_seconds: int) -> Reaped | None:
    """Reap if this holder gets the lease; None when another worker holds it."""
    if not take_lease(session, holder):
        return None
    prune_old_login_attempts(session)
    return reap(session, timeout_seconds=timeout_seconds)


def prune_old_login_attempts(session: Session) -> None:
    """Failed logins older than the rate-limit window count for nothing: keep the table small."""
    from datetime import timedelta

    from app.accounts.repository import prune_login_attempts
    from app.db import utcnow

    window = get_settings().login_window_seconds
    prune_login_attempts(session, before=utcnow() - timedelta(seconds=window))


def tick(holder: str, *, top_up: bool = True) -> Reaped | None:
    """One reaper pass in its own transaction; then ask for new sampling where jobs died."""
    timeout = get_settings().heartbeat_timeout_seconds
    with session_scope() as session:
        reaped = run_once(session, holder, timeout_seconds=timeout)
    if reaped is None:
        return None
    for round_id in reaped.rounds:
        logger.warning("round %s failed: its worker stopped responding", round_id)
    for job_id in reaped.sampling_jobs:
        logger.warning("sampling job %s failed: its worker stopped responding", job_id)
    if top_up:
        from app.sampling.service import send_top_up

        for project_id in reaped.projects_to_top_up:
            send_top_up(project_id)
    return reaped


def give_up_lease(holder: str) -> None:
    with session_scope() as session:
        release_lease(session, holder)
