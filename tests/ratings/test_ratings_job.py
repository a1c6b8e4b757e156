"""The debounced recomputation with committed rows (the job opens its own transactions):
one job per debounce window however many rankings arrive, sent only after the commit, a job
that finds nothing to do is a no-op, and `recompute_pending` holds until the new fit is stored
(a job held mid-way in a thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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

    def pending(self) -> bool:
        with session_scope() as session:
            return service.leaderboard(session, project_id=self.project).recompute_pending

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


# recompute_pending while a run is in progress


@dataclass
class HeldRun:
    """recompute_if_dirty in a thread, stopped inside its fit until `finish`."""

    thread: threading.Thread
    fitting: threading.Event
    go_on: threading.Event
    result: list[bool]

    def finish(self) -> bool:
        self.go_on.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        return self.result[0]


@pytest.fixture
def hold_fit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], HeldRun]]:
    """Start a run whose first fit waits (after the claim and the load) until released; later
    fits (another run) go straight through."""
    fit = service.compute
    fitting, go_on = threading.Event(), threading.Event()
    calls: list[int] = []

    def held_compute(data: service.FitInput) -> service.FitOutput:
        calls.append(1)
        if len(calls) == 1:
            fitting.set()
            assert go_on.wait(timeout=60)
        return fit(data)

    monkeypatch.setattr(service, "compute", held_compute)
    runs: list[HeldRun] = []

    def start(project_id: int) -> HeldRun:
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(recompute_if_dirty(project_id)))
        run = HeldRun(thread, fitting, go_on, result)
        runs.append(run)
        thread.start()
        assert fitting.wait(timeout=60), "the run never reached its fit"
        return run

    yield start
    go_on.set()  # never leave a thread waiting, whatever the test did
    for run in runs:
        run.thread.join(timeout=60)


def test_recompute_pending_holds_until_the_new_fit_is_stored(
    seeded: Seeded, sent: list[tuple[int, float]], hold_fit: Callable[[int], HeldRun]
) -> None:
    seeded.submit_one()
    assert seeded.pending() is True

    run = hold_fit(seeded.project)
    assert seeded.pending() is True  # claimed and loaded, not stored yet
    assert seeded.stored_comparisons() is None

    assert run.finish() is True
    assert seeded.stored_comparisons() == 4
    assert seeded.pending() is False


@pytest.fixture
def held_run(
    seeded: Seeded, sent: list[tuple[int, float]], hold_fit: Callable[[int], HeldRun]
) -> HeldRun:
    """One ranking submitted, and the run it asks for held inside its fit."""
    seeded.submit_one()
    return hold_fit(seeded.project)


def test_a_ranking_during_a_run_keeps_it_pending_and_sends_the_next_run(
    seeded: Seeded, sent: list[tuple[int, float]], held_run: HeldRun
) -> None:
    seeded.submit_one()  # not in the held run's data
    assert len(sent) == 2  # the run's claim reads as stale: this submit sends the next run

    assert held_run.finish() is True
    assert seeded.stored_comparisons() == 4
    assert seeded.pending() is True

    assert recompute_if_dirty(seeded.project) is True
    assert seeded.stored_comparisons() == 8
    assert seeded.pending() is False


def test_a_duplicate_message_during_a_run_does_nothing(
    seeded: Seeded, sent: list[tuple[int, float]], held_run: HeldRun
) -> None:
    assert recompute_if_dirty(seeded.project) is False
    assert seeded.pending() is True
    assert held_run.finish() is True
    assert seeded.pending() is False


def test_a_failed_fit_stays_pending_and_the_next_submit_sends_a_run(
    seeded: Seeded, sent: list[tuple[int, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded.submit_one()

    def broken(data: service.FitInput) -> service.FitOutput:
        raise RuntimeError("fit failed")

    with monkeypatch.context() as patch:
        patch.setattr(service, "compute", broken)
        with pytest.raises(RuntimeError):
            recompute_if_dirty(seeded.project)
    assert seeded.pending() is True  # the stored fit still lacks the ranking

    seeded.submit_one()
    assert len(sent) == 2
    assert recompute_if_dirty(seeded.project) is True
    assert seeded.stored_comparisons() == 8
    assert seeded.pending() is False


def test_the_claim_of_a_lost_run_is_taken_over(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    """A worker that died mid-run leaves its claim; the redelivered message runs again."""
    seeded.submit_one()
    with session_scope() as session:
        long_ago = utcnow() - service.MIN_STALE_MARKER - timedelta(minutes=1)
        assert service.claim(session, project_id=seeded.project, now=long_ago) is not None

    assert recompute_if_dirty(seeded.project) is True
    assert seeded.stored_comparisons() == 4
    assert seeded.pending() is False


def test_changing_how_ratings_are_fitted_sends_the_job_and_other_settings_do_not(
    seeded: Seeded, sent: list[tuple[int, float]]
) -> None:
    from app.admin.service import save_settings

    with session_scope() as session:
        save_settings(session, project_id=seeded.project, settings={"temperature": "0.5"})
    assert sent == []

    with session_scope() as session:
        save_settings(
            session, project_id=seeded.project, settings={"reliability_weighting": "false"}
        )
    assert sent == [(seeded.project, get_settings().ratings_debounce_seconds)]
    assert recompute_if_dirty(seeded.project) is True
