"""The position-bias report from stored rankings, on the leaderboard page and in its JSON."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import (
    AnnotatorExclusion,
    Comparison,
    Project,
    Ranking,
    RankingTask,
    SampleRating,
    User,
)
from app.ratings import service as ratings
from app.ratings.position import first_shown, position_report
from tests.admin.conftest import LoggedIn
from tests.api.conftest import bearer
from tests.factories import make_project, make_ranking, make_task, make_user, task_sample_ids
from tests.ratings import conftest as seeding


def rank(
    session: Session, task: RankingTask, user: User, *, first_on_top: bool, gold: bool = False
) -> Ranking:
    """A ranking of the task's four samples shown in stored order; the first-shown card is
    ranked best (first_on_top) or worst."""
    shown = task_sample_ids(session, task)
    task.gold = gold
    best_first = shown if first_on_top else [*shown[1:], shown[0]]
    ranking = make_ranking(session, task, user, [[s] for s in best_first])
    ranking.display_order = shown
    if gold:  # as the submit and marking a task do: its comparisons carry the mark
        session.execute(
            update(Comparison).where(Comparison.ranking_id == ranking.id).values(gold=True)
        )
    session.flush()
    return ranking


class Biased:
    """A project whose annotator puts the first card on top 12 times out of 14, and rankings
    that must not count: a gold task's, a none-usable answer, an excluded annotator's."""

    def __init__(self, session: Session, **settings: object) -> None:
        self.project: Project = make_project(session, samples_per_prompt=4, **settings)
        self.user, self.excluded = make_user(session), make_user(session)
        seeding.add_members(session, self.project, self.user, self.excluded)
        for i in range(14):
            rank(session, make_task(session, self.project), self.user, first_on_top=i < 12)
        for _ in range(5):  # not counted: gold, and an excluded annotator
            rank(
                session, make_task(session, self.project), self.user, first_on_top=False, gold=True
            )
            task = make_task(session, self.project)
            rank(session, task, self.excluded, first_on_top=False)
        task = make_task(session, self.project)
        session.add(
            Ranking(
                project_id=self.project.id,
                task_id=task.id,
                user_id=self.user.id,
                groups=[],
                none_usable=True,
                none_usable_reason="all off topic",
                display_order=task_sample_ids(session, task),
            )
        )
        session.add(AnnotatorExclusion(project_id=self.project.id, user_id=self.excluded.id))
        session.commit()


def test_the_report_counts_usable_rankings_only_and_finds_the_bias(db_session: Session) -> None:
    biased = Biased(db_session)

    report = position_report(db_session, biased.project.id)

    assert report is not None
    assert report.rate.rankings == 14
    assert report.rate.rate == pytest.approx(12 / 14)
    assert report.rate.expected == pytest.approx(0.25)
    assert report.rate.significant
    assert report.corrected
    assert report.fit is not None
    assert report.fit.gamma_lower is not None
    assert report.fit.gamma_lower > 0
    assert report.fit.n_comparisons == 14 * 6


def test_a_project_with_the_correction_off_is_not_corrected(db_session: Session) -> None:
    report = position_report(db_session, Biased(db_session, position_correction=False).project.id)

    assert report is not None
    assert report.rate.significant
    assert not report.corrected


def test_a_project_without_rankings_has_no_report(db_session: Session) -> None:
    assert position_report(db_session, make_project(db_session).id) is None


def test_the_page_shows_the_rate_against_chance_and_the_correction(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    biased = Biased(db_session)

    page = client.get(f"/admin/projects/{biased.project.id}/leaderboard")

    assert page.status_code == 200
    assert 'id="position-bias"' in page.text
    assert '<strong id="first-card-rate">85.7%</strong>' in page.text
    assert '<strong id="first-card-expected">25.0%</strong>' in page.text
    assert 'data-significant="true"' in page.text
    assert "The ratings include this term" in page.text


def test_the_page_of_a_project_without_rankings_says_so(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = make_project(db_session)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}/leaderboard")

    assert page.status_code == 200
    section = page.text[page.text.index('id="position-bias"') :]
    assert "No usable rankings yet." in section[: section.index("</section>")]


def test_the_json_leaderboard_carries_the_position_bias(
    client: httpx.Client,
    db_session: Session,
    make_token,  # type: ignore[no-untyped-def]
) -> None:
    biased = Biased(db_session)
    empty = make_project(db_session)
    db_session.commit()
    headers = bearer(make_token("read"))

    body = client.get(f"/api/v1/projects/{biased.project.id}/leaderboard", headers=headers).json()
    none = client.get(f"/api/v1/projects/{empty.id}/leaderboard", headers=headers).json()

    bias = body["position_bias"]
    assert bias["rankings"] == 14
    assert bias["first_card_rate"] == pytest.approx(12 / 14)
    assert bias["expected_rate"] == pytest.approx(0.25)
    assert bias["ci_low"] > 0.25
    assert bias["significant"] is True
    assert bias["corrected"] is True
    assert bias["gamma"] > 0
    assert bias["gamma_points"] == pytest.approx(bias["gamma"] / 2.302585092994046 * 400)
    assert none["position_bias"] is None


def _mean_rating_of_first_cards(session: Session, project: Project) -> float:
    first = first_shown(session, project.id)
    ratings = session.scalars(
        select(SampleRating.bt_rating).where(SampleRating.sample_id.in_(list(first.values())))
    ).all()
    assert len(ratings) == len(first) == 14
    return sum(r for r in ratings if r is not None) / len(ratings)


def test_the_ratings_job_takes_a_significant_bias_out_of_the_sample_ratings(
    db_session: Session,
) -> None:
    """The same rankings, the correction on and off: with it, the cards shown first lose the
    rating their place gave them."""
    on, off = Biased(db_session), Biased(db_session, position_correction=False)

    for biased in (on, off):
        ratings.recompute(db_session, project_id=biased.project.id)

    corrected = _mean_rating_of_first_cards(db_session, on.project)
    plain = _mean_rating_of_first_cards(db_session, off.project)
    assert plain > 1100
    assert corrected < plain - 100


def _version_gap(session: Session, **settings: object) -> float:
    """Rating of the trained version minus the base's, from rankings where whatever card is
    shown first is ranked first (the trained version's card is shown first in 10 of 14 tasks)
    and the other cards split evenly between the versions."""
    from app.models import PolicyRating

    project = make_project(session, samples_per_prompt=4, **settings)
    base, trained = seeding.two_versions(session, project)
    user = make_user(session)
    seeding.add_members(session, project, user)
    for i in range(14):
        task, by_version = seeding.mixed_task(session, project, [base, trained])
        (b1, b2), (t1, t2) = by_version[base.id], by_version[trained.id]
        shown = [t1, b1, t2, b2] if i < 10 else [b1, t1, b2, t2]
        ranking = make_ranking(session, task, user, [[s] for s in shown])
        ranking.display_order = shown
    session.commit()
    ratings.recompute(session, project_id=project.id)
    rows = {
        r.policy_version_id: r.bt_rating
        for r in session.scalars(
            select(PolicyRating).where(PolicyRating.policy_version_id.in_([base.id, trained.id]))
        )
    }
    return float(rows[trained.id]) - float(rows[base.id])


def test_the_version_ratings_take_the_first_card_term_too(db_session: Session) -> None:
    corrected = _version_gap(db_session)
    plain = _version_gap(db_session, position_correction=False)

    assert plain > 50  # the trained version's cards were shown first more often
    assert abs(corrected) < plain / 2
