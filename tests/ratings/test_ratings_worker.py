"""A real `rankloop worker` runs the debounced recomputation a submit sends (the embedded
filesystem broker in the SQLite run, Redis in the PostgreSQL run)."""

from __future__ import annotations

import subprocess

from app.db import session_scope
from app.models import PolicyRating, Project
from app.ratings import service
from tests.conftest import FreshDatabase, wait_until
from tests.factories import make_project, make_ranking, make_user
from tests.ratings.conftest import mixed_task, prefer, two_versions


def test_a_submit_gets_its_ratings_recomputed_by_the_worker(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes]
) -> None:
    with session_scope() as session:
        project = make_project(session)
        base, new = two_versions(session, project)
        user = make_user(session)
        for _ in range(3):
            task, samples = mixed_task(session, project, [base, new])
            make_ranking(session, task, user, prefer(new, base)(samples))
            service.note_new_rankings(session, project_id=project.id)
        project_id, new_id = project.id, new.id

    def recomputed() -> bool:
        assert worker_process.poll() is None, "the worker exited"
        with session_scope() as session:
            rating = session.get(PolicyRating, new_id)
            dirty = session.get_one(Project, project_id).ratings_dirty_since
            return rating is not None and dirty is None

    wait_until(recomputed, 120, "the worker to recompute the ratings")
    with session_scope() as session:
        assert session.get_one(PolicyRating, new_id).comparisons == 3 * 4
