"""Annotator reliability in the ratings job, on a real database: the rows it stores, the flag of
a reversed annotator, the version fit weighted only when the project says so, gold answers that
measure annotators without rating versions, and versions rated on uniformly drawn tasks once
active selection chose some."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.gold import service as gold
from app.models import (
    AnnotatorReliability,
    PolicyRating,
    PolicyVersion,
    Project,
    Ranking,
    RankingTask,
    SampleRating,
    User,
)
from app.models.annotator import FLAG_REVERSED
from app.ratings import service
from app.ratings.reliability import ReliabilityConfig
from tests.admin.conftest import LoggedIn
from tests.api.conftest import bearer
from tests.factories import make_project, make_ranking, make_user, task_sample_ids
from tests.ratings.conftest import add_members, mixed_task, two_versions

TASKS = 12  # above the default reliability_min_tasks (10)


@dataclass
class Crowd:
    project: Project
    base: PolicyVersion
    new: PolicyVersion
    good: list[User]
    reversed: User
    tasks: list[RankingTask]


def strict(
    samples: dict[int, list[int]], first: PolicyVersion, then: PolicyVersion
) -> list[list[int]]:
    """Every sample in its own group: `first`'s samples above `then`'s (no ties: ties never
    measure an annotator)."""
    return [[s] for s in samples[first.id] + samples[then.id]]


def seed_crowd(
    session: Session, *, tasks: int = TASKS, reason: str = "uniform", **project: object
) -> Crowd:
    """Three annotators who rank the new version's samples above the base's and one who ranks
    every task the other way round, all four on every task."""
    made = make_project(session, annotations_per_task=4, **project)
    base, new = two_versions(session, made)
    good = [make_user(session) for _ in range(3)]
    contrarian = make_user(session)
    add_members(session, made, *good, contrarian)
    crowd = Crowd(made, base, new, good, contrarian, [])
    add_tasks(session, crowd, tasks, reason=reason)
    return crowd


def add_tasks(session: Session, crowd: Crowd, n: int, *, reason: str = "uniform") -> None:
    for _ in range(n):
        task, samples = mixed_task(session, crowd.project, [crowd.base, crowd.new])
        task.selection_reason = reason
        order = strict(samples, crowd.new, crowd.base)
        for user in crowd.good:
            make_ranking(session, task, user, order)
        make_ranking(session, task, crowd.reversed, order[::-1])
        crowd.tasks.append(task)
    session.flush()


def stored(session: Session, project: Project) -> dict[int, AnnotatorReliability]:
    session.expire_all()
    rows = session.scalars(
        select(AnnotatorReliability).where(AnnotatorReliability.project_id == project.id)
    )
    return {row.user_id: row for row in rows}


def new_rating(session: Session, crowd: Crowd) -> PolicyRating:
    session.expire_all()
    return session.get_one(PolicyRating, crowd.new.id)


def test_recompute_stores_a_row_per_annotator_and_flags_the_reversed_one(
    db_session: Session,
) -> None:
    crowd = seed_crowd(db_session)

    service.recompute(db_session, project_id=crowd.project.id)

    rows = stored(db_session, crowd.project)
    assert set(rows) == {u.id for u in crowd.good} | {crowd.reversed.id}
    contrarian = rows[crowd.reversed.id]
    assert contrarian.flag == FLAG_REVERSED
    assert contrarian.upper < 0.5
    assert contrarian.weight == pytest.approx(ReliabilityConfig().weight_floor)
    assert contrarian.shared_tasks == TASKS
    assert contrarian.comparisons == TASKS * 6  # 6 strict pairs a ranking
    assert contrarian.evidence is not None
    assert f"of {TASKS * 6} pairs" in contrarian.evidence
    assert f"over {TASKS} shared tasks" in contrarian.evidence
    for user in crowd.good:
        row = rows[user.id]
        assert row.flag is None
        assert row.evidence is None
        assert row.lower <= row.reliability <= row.upper
        assert row.reliability > 0.8
        assert row.weight == pytest.approx(1.0)


def test_the_annotator_table_rows_carry_the_stored_fit(db_session: Session) -> None:
    crowd = seed_crowd(db_session)
    service.recompute(db_session, project_id=crowd.project.id)

    report = service.agreement_report(db_session, project_id=crowd.project.id)

    by_user = {row.user_id: row for row in report.annotators}
    contrarian = by_user[crowd.reversed.id]
    assert contrarian.flag == FLAG_REVERSED
    assert contrarian.reliability is not None
    assert contrarian.reliability < 0.5
    assert contrarian.lower is not None
    assert contrarian.upper is not None
    assert contrarian.evidence is not None
    assert contrarian.weight is not None
    assert (contrarian.gold_answered, contrarian.gold_correct) == (0, 0)


def test_below_min_tasks_everyone_weighs_one_and_nobody_is_flagged(db_session: Session) -> None:
    crowd = seed_crowd(db_session, tasks=TASKS, reliability_min_tasks=TASKS + 1)

    service.recompute(db_session, project_id=crowd.project.id)

    rows = stored(db_session, crowd.project)
    assert rows[crowd.reversed.id].reliability < 0.5  # measured all the same
    assert {(r.weight, r.flag) for r in rows.values()} == {(1.0, None)}
    assert set(service.reliability_weights(db_session, crowd.project.id).values()) == {1.0}


def test_weights_change_the_version_fit_only_when_the_project_weights(db_session: Session) -> None:
    crowd = seed_crowd(db_session, reliability_weighting=False)

    service.recompute(db_session, project_id=crowd.project.id)
    off = new_rating(db_session, crowd).bt_rating
    board = service.leaderboard(db_session, project_id=crowd.project.id)
    assert not board.reliability_weighted
    assert set(service.reliability_weights(db_session, crowd.project.id).values()) == {1.0}

    crowd.project.reliability_weighting = True
    service.recompute(db_session, project_id=crowd.project.id)
    on = new_rating(db_session, crowd).bt_rating
    board = service.leaderboard(db_session, project_id=crowd.project.id)
    assert board.reliability_weighted
    weights = service.reliability_weights(db_session, crowd.project.id)
    assert weights[crowd.reversed.id] == pytest.approx(ReliabilityConfig().weight_floor)

    crowd.project.reliability_weighting = False
    service.recompute(db_session, project_id=crowd.project.id)
    again = new_rating(db_session, crowd).bt_rating

    assert on is not None
    assert off is not None
    assert on > off + 50  # the contrarian's quarter of the votes no longer holds it back
    assert again == pytest.approx(off)


def test_the_reversed_annotator_weighs_little_in_the_sample_ratings(db_session: Session) -> None:
    crowd = seed_crowd(db_session, reliability_weighting=False)
    order = _good_order(db_session, crowd)

    service.recompute(db_session, project_id=crowd.project.id)
    off = _sample_ratings(db_session, order)
    crowd.project.reliability_weighting = True
    service.recompute(db_session, project_id=crowd.project.id)
    on = _sample_ratings(db_session, order)

    assert on[0] - on[-1] > off[0] - off[-1] + 100  # best and worst sample further apart


def _good_order(session: Session, crowd: Crowd) -> list[int]:
    """The good annotators' order of the first task, best first."""
    ranking = session.scalars(
        select(Ranking).where(
            Ranking.task_id == crowd.tasks[0].id, Ranking.user_id == crowd.good[0].id
        )
    ).one()
    return [s for [s] in ranking.groups]


def _sample_ratings(session: Session, sample_ids: list[int]) -> list[float]:
    session.expire_all()
    rows = dict(
        session.execute(
            select(SampleRating.sample_id, SampleRating.bt_rating).where(
                SampleRating.sample_id.in_(sample_ids)
            )
        ).all()
    )
    return [float(rows[s] or 0.0) for s in sample_ids]


def test_gold_answers_measure_annotators_and_never_rate_versions(db_session: Session) -> None:
    crowd = seed_crowd(db_session, reliability_weighting=False)
    service.recompute(db_session, project_id=crowd.project.id)
    before = new_rating(db_session, crowd)
    rating, comparisons = before.bt_rating, before.comparisons
    # Three gold tasks whose known order is the good annotators' order
    golds = []
    for _ in range(3):
        task, samples = mixed_task(db_session, crowd.project, [crowd.base, crowd.new])
        order = strict(samples, crowd.new, crowd.base)
        for user in crowd.good:
            make_ranking(db_session, task, user, order)
        make_ranking(db_session, task, crowd.reversed, order[::-1])
        gold.mark_gold(db_session, project_id=crowd.project.id, task_id=task.id, groups=order)
        golds.append(task)

    service.recompute(db_session, project_id=crowd.project.id)

    after = new_rating(db_session, crowd)
    assert after.comparisons == comparisons
    assert after.bt_rating == pytest.approx(rating)
    rows = stored(db_session, crowd.project)
    assert (rows[crowd.reversed.id].gold_answered, rows[crowd.reversed.id].gold_correct) == (18, 0)
    assert (rows[crowd.good[0].id].gold_answered, rows[crowd.good[0].id].gold_correct) == (18, 18)
    assert rows[crowd.reversed.id].shared_tasks == TASKS + 3
    assert "gold 0/18 pairs right" in (rows[crowd.reversed.id].evidence or "")
    gold_samples = {s for t in golds for s in task_sample_ids(db_session, t)}
    db_session.expire_all()
    rated = set(
        db_session.scalars(
            select(SampleRating.sample_id).where(
                SampleRating.sample_id.in_(gold_samples), SampleRating.bt_rating.is_not(None)
            )
        )
    )
    assert rated == set()


def test_an_excluded_annotator_is_still_measured(db_session: Session) -> None:
    crowd = seed_crowd(db_session)

    service.set_excluded(
        db_session, project_id=crowd.project.id, user_id=crowd.reversed.id, excluded=True
    )

    rows = stored(db_session, crowd.project)
    assert rows[crowd.reversed.id].flag == FLAG_REVERSED
    assert new_rating(db_session, crowd).comparisons == TASKS * 3 * 4  # the good three only


def test_versions_are_rated_on_uniform_tasks_once_active_selection_chose_some(
    db_session: Session,
) -> None:
    crowd = seed_crowd(db_session, reliability_weighting=False)
    service.recompute(db_session, project_id=crowd.project.id)
    uniform = new_rating(db_session, crowd)
    assert not service.leaderboard(db_session, project_id=crowd.project.id).uniform_tasks_only
    # Chosen tasks where everyone prefers the base: they must not move the versions
    chosen = Crowd(crowd.project, crowd.new, crowd.base, crowd.good, crowd.reversed, [])
    add_tasks(db_session, chosen, 6, reason="uncertainty")

    service.recompute(db_session, project_id=crowd.project.id)

    selected = new_rating(db_session, crowd)
    assert selected.comparisons == uniform.comparisons
    assert selected.bt_rating == pytest.approx(uniform.bt_rating)
    board = service.leaderboard(db_session, project_id=crowd.project.id)
    assert board.uniform_tasks_only
    # The sample fit and the reliability fit use every task
    db_session.expire_all()
    chosen_samples = {s for t in chosen.tasks for s in task_sample_ids(db_session, t)}
    rated = db_session.scalars(
        select(SampleRating.sample_id).where(
            SampleRating.sample_id.in_(chosen_samples), SampleRating.bt_rating.is_not(None)
        )
    ).all()
    assert set(rated) == chosen_samples
    assert stored(db_session, crowd.project)[crowd.reversed.id].shared_tasks == TASKS + 6


def test_the_leaderboard_page_says_what_the_version_ratings_rest_on(
    client: httpx.Client,
    admin: LoggedIn,
    make_token: Callable[[str], str],
    db_session: Session,
) -> None:
    crowd = seed_crowd(db_session, reliability_weighting=True)
    service.recompute(db_session, project_id=crowd.project.id)
    db_session.commit()
    url = f"/admin/projects/{crowd.project.id}/leaderboard"
    api = f"/api/v1/projects/{crowd.project.id}/leaderboard"

    weighted_only = client.get(url).text
    assert "weighted by its annotator's reliability" in weighted_only
    assert "uniformly drawn tasks" not in weighted_only

    db_session.execute(
        update(RankingTask)
        .where(RankingTask.id == crowd.tasks[0].id)
        .values(selection_reason="undecided")
    )
    service.recompute(db_session, project_id=crowd.project.id)
    db_session.commit()

    page = client.get(url).text
    assert "Version ratings computed on uniformly drawn tasks" in page
    board = client.get(api, headers=bearer(make_token("read"))).json()
    assert board["uniform_tasks_only"] is True
    assert board["reliability_weighted"] is True
