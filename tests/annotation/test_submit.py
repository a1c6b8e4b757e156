"""What one submit writes: the ranking, its pairs and ties, progress, sample Elo, flags."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation import service
from app.annotation.schemas import FlagIn, SubmitRanking
from app.db import utcnow
from app.models import (
    AssignmentState,
    Comparison,
    Project,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SampleRating,
    TaskStatus,
    User,
)
from app.ratings.elo import K_FACTOR, update
from tests.annotation.conftest import make_member
from tests.factories import make_task, make_version, task_sample_ids


@pytest.fixture
def user(db_session: Session, project: Project) -> User:
    return make_member(db_session, project)


def leased(session: Session, user: User, project: Project, **kwargs: object) -> RankingTask:
    out = service.next_task(session, user_id=user.id, chosen_project_id=project.id, **kwargs)
    assert out.task is not None
    return session.get_one(RankingTask, out.task.id)


def submit(session: Session, task: RankingTask, user: User, **fields: object) -> object:
    return service.submit_ranking(
        session, task_id=task.id, user_id=user.id, submission=SubmitRanking(**fields)
    )


def pairs_of(session: Session, ranking_id: int) -> set[tuple[int, int, bool]]:
    rows = session.execute(
        select(Comparison.winner_id, Comparison.loser_id, Comparison.tie).where(
            Comparison.ranking_id == ranking_id
        )
    )
    return set(rows)


def test_submit_stores_the_ranking_with_every_pair_and_ties_inside_groups(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    leased(db_session, user, project)
    a, b, c, d = task_sample_ids(db_session, task)

    out = submit(db_session, task, user, groups=[[c], [b, a], [d]])

    ranking = db_session.get_one(Ranking, out.ranking_id)  # type: ignore[attr-defined]
    assert ranking.groups == [[c], [b, a], [d]]
    assert pairs_of(db_session, ranking.id) == {
        (c, b, False), (c, a, False), (c, d, False),
        (min(a, b), max(a, b), True),
        (b, d, False), (a, d, False),
    }  # fmt: skip
    assert (out.comparisons, out.ties) == (6, 1)  # type: ignore[attr-defined]


def test_submit_makes_no_pair_of_two_samples_with_one_text(
    db_session: Session, project: Project, user: User
) -> None:
    same = make_task(db_session, project, texts=["Paris.", "Lyon.", "  PARIS. ", "Nice."])
    leased(db_session, user, project)
    a, b, c, d = task_sample_ids(db_session, same)

    out = submit(db_session, same, user, groups=[[a], [b], [c], [d]])

    ranking_id = out.ranking_id  # type: ignore[attr-defined]
    assert out.comparisons == 6 - 1  # type: ignore[attr-defined]
    assert (a, c, False) not in pairs_of(db_session, ranking_id)


def test_comparisons_carry_the_policy_versions_of_both_samples(
    db_session: Session, project: Project, user: User
) -> None:
    v2 = make_version(db_session, project)
    task = make_task(db_session, project)
    a, b, *_ = task_sample_ids(db_session, task)
    db_session.get_one(Sample, a).policy_version_id = v2.id
    leased(db_session, user, project)

    out = submit(db_session, task, user, groups=[[i] for i in task_sample_ids(db_session, task)])

    comparison = db_session.scalars(
        select(Comparison).where(
            Comparison.ranking_id == out.ranking_id,  # type: ignore[attr-defined]
            Comparison.winner_id == a,
            Comparison.loser_id == b,
        )
    ).one()
    assert comparison.winner_version_id == v2.id
    assert comparison.loser_version_id == db_session.get_one(Sample, b).policy_version_id
    assert (comparison.task_id, comparison.prompt_id, comparison.user_id) == (
        task.id,
        task.prompt_id,
        user.id,
    )


def test_submit_records_the_display_order_and_the_time_spent(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    shown = service.next_task(db_session, user_id=user.id, chosen_project_id=project.id).task
    assert shown is not None

    out = submit(db_session, task, user, groups=[[s.id] for s in shown.samples], time_spent_ms=4321)

    ranking = db_session.get_one(Ranking, out.ranking_id)  # type: ignore[attr-defined]
    assert ranking.display_order == [s.id for s in shown.samples]
    assert ranking.time_spent_ms == 4321


def test_time_spent_defaults_to_the_age_of_the_lease(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    start = utcnow()
    leased(db_session, user, project, now=start)

    out = service.submit_ranking(
        db_session,
        task_id=task.id,
        user_id=user.id,
        submission=SubmitRanking(groups=[[i] for i in task_sample_ids(db_session, task)]),
        now=start + timedelta(seconds=42),
    )

    assert db_session.get_one(Ranking, out.ranking_id).time_spent_ms == 42_000


def test_submit_moves_the_lease_and_the_task_forward(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    leased(db_session, user, project)

    submit(db_session, task, user, groups=[[i] for i in task_sample_ids(db_session, task)])

    found = service.repository.lock_own_lease(db_session, task_id=task.id, user_id=user.id)
    assert found is not None
    assignment, _ = found
    assert assignment.state == AssignmentState.submitted
    assert (task.annotations_done, task.status) == (1, TaskStatus.open)


def test_sample_elo_follows_the_pairs_in_ranking_order(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    leased(db_session, user, project)
    a, b, c, d = task_sample_ids(db_session, task)

    submit(db_session, task, user, groups=[[a, b], [c], [d]])

    expected = dict.fromkeys((a, b, c, d), 1000.0)
    for won, lost, outcome in [(a, b, 0.5), (a, c, 1), (a, d, 1), (b, c, 1), (b, d, 1), (c, d, 1)]:
        expected[won], expected[lost] = update(expected[won], expected[lost], outcome, K_FACTOR)
    ratings = {r.sample_id: r for r in db_session.scalars(select(SampleRating))}
    assert {i: ratings[i].elo for i in expected} == pytest.approx(expected)
    assert {ratings[i].elo_comparisons for i in expected} == {3}
    assert sum(r.elo for r in ratings.values()) == pytest.approx(4000.0)


def test_a_second_ranking_continues_from_the_stored_elo(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    other = make_member(db_session, project)
    order = [[i] for i in task_sample_ids(db_session, task)]
    for annotator in (user, other):
        leased(db_session, annotator, project)
        submit(db_session, task, annotator, groups=order)

    best = db_session.get_one(SampleRating, order[0][0])
    db_session.refresh(best)
    assert best.elo_comparisons == 6
    assert best.elo > 1000 + K_FACTOR * 3 * 0.5  # two wins per opponent, each near +K/2


def test_submit_marks_the_project_ratings_dirty_once(
    db_session: Session, project: Project, user: User
) -> None:
    first, second = make_task(db_session, project), make_task(db_session, project)
    start = utcnow()
    for i, task in enumerate((first, second)):
        now = start + timedelta(seconds=i)
        leased(db_session, user, project, now=now)
        service.submit_ranking(
            db_session,
            task_id=task.id,
            user_id=user.id,
            submission=SubmitRanking(groups=[[s] for s in task_sample_ids(db_session, task)]),
            now=now,
        )

    db_session.refresh(project)
    assert project.ratings_dirty_since == start


def test_a_none_usable_answer_stores_its_reason_and_no_pairs(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    leased(db_session, user, project)

    out = submit(db_session, task, user, none_usable=True, none_usable_reason="  all gibberish ")

    ranking = db_session.get_one(Ranking, out.ranking_id)  # type: ignore[attr-defined]
    assert (ranking.none_usable, ranking.none_usable_reason, ranking.groups) == (
        True,
        "all gibberish",
        [],
    )
    assert pairs_of(db_session, ranking.id) == set()
    assert db_session.scalars(select(SampleRating)).all() == []
    db_session.refresh(project)
    assert project.ratings_dirty_since is None
    assert task.annotations_done == 1


def test_flags_are_stored_per_sample_and_annotator(
    db_session: Session, project: Project, task: RankingTask, user: User
) -> None:
    leased(db_session, user, project)
    ids = task_sample_ids(db_session, task)

    submit(
        db_session,
        task,
        user,
        groups=[[i] for i in ids],
        flags=[FlagIn(sample_id=ids[2], reason="slur")],
    )

    flag = db_session.scalars(select(SampleFlag)).one()
    assert (flag.sample_id, flag.user_id, flag.kind, flag.reason) == (
        ids[2],
        user.id,
        "harmful",
        "slur",
    )
