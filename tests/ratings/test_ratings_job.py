"""The debounced recomputation with committed rows (the job opens its own transactions):
one job per debounce window however many rankings arrive, sent only after the commit, and a
job that finds nothing to do is a no-op."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from app.annotation import service as annotation
from app.annotation.schemas import SubmitRanking
from app.config import get_settings
from app.db import session_scope, utcnow
from app.models import PolicyRating, PolicyVersion, Project, User
from app.ratings import service
from tests.conftest import FreshDatabase
from tests.factories import make_project, make_ranking, make_user
from tests.ratings.conftest import add_members, mixed_task, prefer, two_versions
from worker.jobs.ratings import recompute_if_dirty


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """The messages the submits send (the worker test sends real ones)."""
    messages: list[tuple[int, float]] = []
    monkeypatch.setattr(
        service, "send_recompute", lambda pid, *, countdown: messages.append((pid, countdown))
    )
    return messages


@dataclass(frozen=True)
class Seeded:
    project: int
    base: int
    new: int
    user: int

    def submit_one(self, now: datetime | None = None) -> None:
        """What a submit does for ratings: write a ranking's comparisons, then note them."""
        with session_scope() as session:
            project = session.get_one(Project, self.project)
            base = session.get_one(PolicyVersion, self.base)
            new = session.get_one(PolicyVersion, self.new)
            task, samples = mixed_task(session, project, [base, new])
            user = session.get_one(User, self.user)
            make_ranking(session, task, user, prefer(new, base)(samples))
            service.note_new_rankings(session, project_id=self.project, now=now)

    def stored_comparisons(self) -> int | None:
        """Comparisons of the new version in the stored fit."""
        with session_scope() as session:
            rating = session.get(PolicyRating, self.new)
            return None if rating is None else rating.comparisons


@pytest.fixture
def seeded(app_database: FreshDatabase) -> Seeded:
    with session_scope() as session:
        project = make_project(session)
        base, new = two_versions(session, project)
        user = make_user(session)
        add_members(session, project, user)
        return Seeded(project.id, base.id, new.id, user.id)


def test_many_submissions_send_one_job_after_commit(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    with session_scope() as session:
        service.note_new_rankings(session, project_id=seeded.project)
        assert sent == []  # not before the commit: the job must see the comparisons
    for _ in range(4):
        seeded.submit_one()

    assert sent == [(seeded.project, get_settings().ratings_debounce_seconds)]
    assert recompute_if_dirty(seeded.project) is True
    assert seeded.stored_comparisons() == 4 * 4
    assert recompute_if_dirty(seeded.project) is False  # a duplicate message does nothing


def test_continuous_annotation_gives_one_recomputation_per_window(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    """Five submits land in each window; the job runs when the window's message is due."""
    runs = 0
    for window in range(6):
        for _ in range(5):
            seeded.submit_one()
        assert len(sent) == window + 1
        runs += recompute_if_dirty(seeded.project)
    assert runs == 6
    assert seeded.stored_comparisons() == 30 * 4


def test_a_submit_during_a_run_sends_the_next_job(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    seeded.submit_one()
    with session_scope() as session:
        assert service.claim(session, project_id=seeded.project)
    with session_scope(readonly=True) as session:
        data = service.load(session, project_id=seeded.project)
    seeded.submit_one()  # lands while the fit runs: not in `data`, so it must trigger another run
    fitted = service.compute(data)
    with session_scope() as session:
        service.store(session, fitted)
        pending = service.leaderboard(session, project_id=seeded.project).recompute_pending

    assert len(sent) == 2
    assert pending is True
    assert seeded.stored_comparisons() == 4
    assert recompute_if_dirty(seeded.project) is True
    assert seeded.stored_comparisons() == 8


def test_a_marker_whose_job_was_lost_is_sent_again_once_stale(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    start = utcnow()
    seeded.submit_one(now=start)
    seeded.submit_one(now=start + timedelta(seconds=1))
    assert len(sent) == 1
    seeded.submit_one(now=start + service.MIN_STALE_MARKER + timedelta(seconds=1))
    assert len(sent) == 2


def test_the_real_submit_sends_the_job(seeded: Seeded, sent: list[tuple[int, float]]) -> None:
    with session_scope() as session:
        project = session.get_one(Project, seeded.project)
        versions = [session.get_one(PolicyVersion, v) for v in (seeded.base, seeded.new)]
        for _ in range(2):
            mixed_task(session, project, versions)
    for _ in range(2):
        with session_scope() as session:
            out = annotation.next_task(
                session, user_id=seeded.user, chosen_project_id=seeded.project
            )
            assert out.task is not None
            groups = [[s.id] for s in out.task.samples]
            annotation.submit_ranking(
                session,
                task_id=out.task.id,
                user_id=seeded.user,
                submission=SubmitRanking(groups=groups),
            )

    assert sent == [(seeded.project, get_settings().ratings_debounce_seconds)]
