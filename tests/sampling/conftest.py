"""Helpers shared by the sampling tests that run jobs on the tiny model."""

from __future__ import annotations

from app.sampling import service
from tests.conftest import FreshDatabase


def start_job(db: FreshDatabase, project_id: int) -> int:
    """Starts a sampling job (not enqueued: the test runs it) and commits it: its id."""
    with db.session() as session:
        job = service.start_sampling(session, project_id=project_id, enqueue=False)
        assert job is not None
        session.commit()
        return job.id
