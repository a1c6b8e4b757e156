"""The ratings service on seeded projects: fits stored per sample and per version, the
leaderboard and its verdicts, exclusions, flags, agreement and per-prompt consensus."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.models import AnnotatorExclusion, PolicyRating, Project, Role, SampleFlag, SampleRating
from app.ratings import service
from app.ratings.bradley_terry import BETTER, UNDECIDED, WORSE
from app.rounds.snapshots import create_snapshot
from tests.conftest import FreshDatabase
from tests.factories import make_project, make_ranking, make_user, make_version
from tests.ratings.conftest import (
    add_members,
    mixed_task,
    mostly,
    prefer,
    seed_rankings,
    two_versions,
)


@pytest.fixture
def project(db_session: Session) -> Project:
    return make_project(db_session, samples_per_prompt=4, annotations_per_task=2)


def _rows(db_session: Session, project: Project) -> dict[int, object]:
    return {v.id: v for v in service.leaderboard(db_session, project_id=project.id).versions}


@pytest.mark.parametrize(
    ("new_wins", "always", "expected"),
    [(True, True, BETTER), (True, False, BETTER), (False, False, WORSE)],
)
def test_the_version_whose_samples_win_is_on_top_with_a_verdict(
    db_session: Session, project: Project, new_wins: bool, always: bool, expected: str
) -> None:
    base, new = two_versions(db_session, project)
    annotators = [make_user(db_session), make_user(db_session)]
    add_members(db_session, project, *annotators)
    winner, loser = (new, base) if new_wins else (base, new)
    ranker = prefer(winner, loser) if always else mostly(winner, loser)
    seed_rankings(db_session, project, [base, new], annotators, tasks=15, rank=ranker)

    service.recompute(db_session, project_id=project.id)

    board = service.leaderboard(db_session, project_id=project.id)
    assert [v.id for v in board.versions] == [winner.id, loser.id]
    by_id = {v.id: v for v in board.versions}
    assert by_id[new.id].previous_version_id == base.id
    assert by_id[new.id].verdict == expected
    share = 1.0 if always else 24 / 30  # every fifth ranking reversed
    assert by_id[new.id].win_rate_vs_previous == pytest.approx(share if new_wins else 1 - share)
    assert by_id[base.id].verdict is None  # nothing before the base
    for row in board.versions:
        assert row.comparisons == 15 * 2 * 4  # 4 cross-version pairs per ranking
        assert row.ci_low - 1e-6 <= row.rating <= row.ci_high + 1e-6
        # Unanimous rankings resample to the same data: a zero-width interval.
        assert (row.ci_high - row.ci_low > 1.0) is not always
    assert by_id[winner.id].elo > 1000 > by_id[loser.id].elo


def test_two_rankings_are_not_enough_for_a_verdict(db_session: Session, project: Project) -> None:
    base, new = two_versions(db_session, project)
    annotator = make_user(db_session)
    seed_rankings(db_session, project, [base, new], [annotator], tasks=2, rank=prefer(new, base))

    service.recompute(db_session, project_id=project.id)

    rows = service.leaderboard(db_session, project_id=project.id).versions
    assert [v.id for v in rows] == [new.id, base.id]
    assert rows[0].verdict == UNDECIDED
    assert rows[0].win_rate_vs_previous == 1.0


def test_evenly_split_votes_are_not_distinguishable(db_session: Session, project: Project) -> None:
    base, new = two_versions(db_session, project)
    a, b = make_user(db_session), make_user(db_session)
    seed_rankings(db_session, project, [base, new], [a], tasks=20, rank=prefer(new, base))
    seed_rankings(db_session, project, [base, new], [b], tasks=20, rank=prefer(base, new))

    service.recompute(db_session, project_id=project.id)

    row = _rows(db_session, project)[new.id]
    assert row.verdict == UNDECIDED  # type: ignore[attr-defined]
    assert row.win_rate_vs_previous == 0.5  # type: ignore[attr-defined]


def test_versions_without_comparisons_are_listed_last_without_ratings(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    unused = make_version(db_session, project, name="uploaded")
    seed_rankings(
        db_session, project, [base, new], [make_user(db_session)], tasks=3, rank=prefer(new, base)
    )

    service.recompute(db_session, project_id=project.id)

    rows = service.leaderboard(db_session, project_id=project.id).versions
    assert rows[-1].id == unused.id
    assert (rows[-1].rating, rows[-1].comparisons, rows[-1].verdict) == (None, 0, None)


def test_an_external_version_is_judged_against_the_version_before_it(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    external = make_version(db_session, project, name="gpt-x")  # no parent
    annotator = make_user(db_session)
    seed_rankings(db_session, project, [base, new], [annotator], tasks=3, rank=prefer(new, base))
    seed_rankings(
        db_session, project, [new, external], [annotator], tasks=3, rank=prefer(external, new)
    )

    service.recompute(db_session, project_id=project.id)

    rows = _rows(db_session, project)
    assert rows[external.id].previous_version_id == new.id  # type: ignore[attr-defined]
    assert rows[external.id].win_rate_vs_previous == 1.0  # type: ignore[attr-defined]
    assert [v.id for v in service.leaderboard(db_session, project_id=project.id).versions] == [
        external.id,
        new.id,
        base.id,
    ]


def test_the_fit_is_stored_with_its_time_and_comparison_counts(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    annotator = make_user(db_session)
    (task,) = seed_rankings(
        db_session, project, [base, new], [annotator], tasks=1, rank=prefer(new, base)
    )
    now = utcnow()

    summary = service.recompute(db_session, project_id=project.id, now=now)

    assert (summary.comparisons, summary.samples, summary.versions, summary.stored) == (
        6,
        4,
        2,
        True,
    )
    stored = db_session.scalars(select(PolicyRating)).all()
    assert {(r.policy_version_id, r.comparisons, r.fitted_at) for r in stored} == {
        (base.id, 4, now),
        (new.id, 4, now),
    }
    samples = db_session.scalars(select(SampleRating)).all()
    assert len(samples) == 4
    assert {(s.bt_comparisons, s.bt_fitted_at) for s in samples} == {(3, now)}
    assert all(s.bt_lower <= s.bt_rating <= s.bt_upper for s in samples)
    assert service.leaderboard(db_session, project_id=project.id).computed_at == now


def test_a_fit_on_older_data_does_not_overwrite_a_newer_one(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    seed_rankings(
        db_session, project, [base, new], [make_user(db_session)], tasks=2, rank=prefer(new, base)
    )
    now = utcnow()
    older = service.compute(service.load(db_session, project_id=project.id, now=now))
    service.recompute(db_session, project_id=project.id, now=now + timedelta(seconds=1))

    assert service.store(db_session, older) is False
    assert service.leaderboard(db_session, project_id=project.id).computed_at == now + timedelta(
        seconds=1
    )


def test_two_fits_stored_at_once_keep_the_newer_one(app_database: FreshDatabase) -> None:
    """The job and an admin's recompute (or exclusion) store together: the second waits for
    the first, then replaces its rows (on PostgreSQL its inserts used to collide with them)."""
    with app_database.session() as session:
        project = make_project(session, annotations_per_task=4)
        base, new = two_versions(session, project)
        seed_rankings(
            session, project, [base, new], [make_user(session)], tasks=2, rank=prefer(new, base)
        )
        session.commit()
        project_id = project.id
    older, newer = utcnow(), utcnow() + timedelta(seconds=1)
    first = app_database.session()
    assert service.recompute(first, project_id=project_id, now=older).stored  # not committed
    outcome: list[object] = []

    def second_store() -> None:
        with app_database.session() as session:
            try:
                outcome.append(service.recompute(session, project_id=project_id, now=newer).stored)
                session.commit()
            except Exception as exc:  # the failure this test is about
                outcome.append(exc)

    second = threading.Thread(target=second_store)
    second.start()
    second.join(timeout=0.5)  # waits for the first store's transaction
    first.commit()
    first.close()
    second.join(timeout=30)

    assert outcome == [True]
    with app_database.session() as session:
        assert service.leaderboard(session, project_id=project_id).computed_at == newer


def test_excluding_an_annotator_drops_their_comparisons_and_including_restores_them(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    steady, other = make_user(db_session), make_user(db_session)
    add_members(db_session, project, steady, other)
    seed_rankings(db_session, project, [base, new], [steady], tasks=10, rank=prefer(new, base))
    seed_rankings(
        db_session, project, [base, new], [steady, other], tasks=5, rank=prefer(new, base)
    )
    service.recompute(db_session, project_id=project.id)
    before = _rows(db_session, project)[new.id].comparisons  # type: ignore[attr-defined]

    exclusion = service.set_excluded(
        db_session, project_id=project.id, user_id=other.id, excluded=True, reason=" contrarian "
    )

    assert exclusion is not None
    assert exclusion.reason == "contrarian"
    assert before == 4 * (10 + 2 * 5)
    assert _rows(db_session, project)[new.id].comparisons == 4 * 15  # type: ignore[attr-defined]
    snapshot = create_snapshot(db_session, project_id=project.id, name="after exclusion")
    assert snapshot.comparison_count == 6 * 15

    included = service.set_excluded(
        db_session, project_id=project.id, user_id=other.id, excluded=False
    )

    assert _rows(db_session, project)[new.id].comparisons == before  # type: ignore[attr-defined]
    assert included is None
    assert db_session.get(AnnotatorExclusion, (project.id, other.id)) is None


def test_excluding_someone_who_never_worked_on_the_project_is_not_found(
    db_session: Session, project: Project
) -> None:
    with pytest.raises(NotFound):
        service.set_excluded(
            db_session, project_id=project.id, user_id=make_user(db_session).id, excluded=True
        )


def test_comparisons_with_a_flagged_sample_are_left_out(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    annotator = make_user(db_session)
    task, samples = mixed_task(db_session, project, [base, new])
    make_ranking(db_session, task, annotator, prefer(new, base)(samples))
    flagged = samples[new.id][0]
    db_session.add(SampleFlag(sample_id=flagged, user_id=annotator.id, reason="harmful"))
    db_session.flush()

    summary = service.recompute(db_session, project_id=project.id)

    assert summary.comparisons == 6 - 3
    assert db_session.get(SampleRating, flagged) is None


def test_recompute_of_an_unknown_project_is_not_found(db_session: Session) -> None:
    with pytest.raises(NotFound):
        service.recompute(db_session, project_id=2**31 - 1)


# Agreement


def test_a_contrarian_is_flagged_and_disagrees_with_the_consensus(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    a, b, c, contrarian = (make_user(db_session) for _ in range(4))
    add_members(db_session, project, a, b, c, contrarian)
    for _ in range(6):
        task, samples = mixed_task(db_session, project, [base, new])
        for agreeing in (a, b, c):
            make_ranking(db_session, task, agreeing, prefer(new, base)(samples))
        make_ranking(db_session, task, contrarian, prefer(base, new)(samples))

    report = service.agreement_report(db_session, project_id=project.id)

    rows = {r.user_id: r for r in report.annotators}
    assert rows[contrarian.id].outlier
    assert not rows[a.id].outlier
    assert not rows[b.id].outlier
    assert not rows[c.id].outlier
    assert rows[contrarian.id].agreement < 0.5 < rows[a.id].agreement
    assert report.tasks_with_overlap == 6
    assert all(r.shared_tasks == 6 and r.rankings == 6 for r in rows.values())

    service.set_excluded(db_session, project_id=project.id, user_id=contrarian.id, excluded=True)
    report = service.agreement_report(db_session, project_id=project.id)

    rows = {r.user_id: r for r in report.annotators}
    assert report.pairwise_agreement == 1.0  # a, b and c agree; the contrarian no longer counts
    assert rows[contrarian.id].excluded is True
    assert rows[contrarian.id].agreement is not None
    assert rows[contrarian.id].agreement < 0.5


def test_agreement_of_a_single_annotator_project_is_empty(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    annotator = make_user(db_session, role=Role.annotator)
    add_members(db_session, project, annotator)
    seed_rankings(db_session, project, [base, new], [annotator], tasks=3, rank=prefer(new, base))

    report = service.agreement_report(db_session, project_id=project.id)

    assert (report.tasks_with_overlap, report.pairwise_agreement) == (0, None)
    (row,) = report.annotators
    assert (row.rankings, row.shared_tasks, row.agreement, row.outlier) == (3, 0, None, False)


def test_prompt_consensus_orders_samples_by_the_majority(
    db_session: Session, project: Project
) -> None:
    base, new = two_versions(db_session, project)
    a, b, c = (make_user(db_session) for _ in range(3))
    task, samples = mixed_task(db_session, project, [base, new], per_version=1)
    (old_id,), (new_id,) = samples[base.id], samples[new.id]
    make_ranking(db_session, task, a, [[new_id], [old_id]])
    make_ranking(db_session, task, b, [[new_id], [old_id]])
    make_ranking(db_session, task, c, [[old_id], [new_id]])

    (prompt,) = service.prompt_consensus(db_session, project_id=project.id)

    assert [s.sample_id for s in prompt.samples] == [new_id, old_id]
    assert prompt.samples[0].score > 1000 > prompt.samples[1].score
    assert (prompt.rankings, prompt.annotators) == (3, 3)
    assert prompt.samples[0].version_number == new.number
