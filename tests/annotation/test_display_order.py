"""Card order (issue 22 item 4): a shuffle per task and annotator, stable on reload, stored on
the ranking and as the card places of each comparison, through the real submit route."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation import service
from app.db import utcnow
from app.models import Comparison, Ranking, User
from tests.annotation.conftest import Annotator, make_member
from tests.factories import make_project, make_task, task_sample_ids

SAMPLE_ID = re.compile(r'data-sample-id="(\d+)"')


@given(
    task_id=st.integers(1, 2**31),
    user_id=st.integers(1, 2**31),
    ids=st.sets(st.integers(1, 10**9), min_size=1, max_size=12),
)
@settings(derandomize=True, deadline=None, max_examples=60)
def test_the_order_is_a_permutation_that_ignores_the_order_ids_come_in(
    task_id: int, user_id: int, ids: set[int]
) -> None:
    given_order = list(ids)
    order = service.display_order(task_id, user_id, given_order)
    assert sorted(order) == sorted(ids)
    assert order == service.display_order(task_id, user_id, list(reversed(given_order)))


def test_the_first_card_is_uniform_over_tasks_and_annotators() -> None:
    """Each of four places is equally likely to hold a given sample: no sample (hence no
    version, since task samples are inserted version by version) is favoured."""
    firsts = Counter(
        service.display_order(task, user, [11, 22, 33, 44])[0]
        for task in range(1, 101)
        for user in range(1, 41)
    )
    assert set(firsts) == {11, 22, 33, 44}
    assert chisquare(list(firsts.values())).pvalue > 0.001


def test_annotators_of_the_same_task_see_different_orders() -> None:
    ids = list(range(100, 109))
    orders = {tuple(service.display_order(7, user, ids)) for user in range(1, 21)}
    assert len(orders) == 20
    assert len({o[0] for o in orders}) > 3


def test_the_order_is_shown_stable_on_reload_and_stored_with_the_card_places(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, samples_per_prompt=5, annotations_per_task=2)
    task = make_task(db_session, project)
    first, second = (log_in(make_member(db_session, project)) for _ in range(2))

    shown = [s["id"] for s in first.next_task()["task"]["samples"]]
    page = first.http.get("/annotate")
    again = [s["id"] for s in first.next_task()["task"]["samples"]]
    other = [s["id"] for s in second.next_task()["task"]["samples"]]

    assert sorted(shown) == sorted(task_sample_ids(db_session, task))
    assert [int(i) for i in SAMPLE_ID.findall(page.text)] == shown
    assert again == shown
    assert other != shown
    # The annotator ranks the cards in reverse display order, with the middle two tied
    groups = [[shown[4]], [shown[3]], [shown[2], shown[1]], [shown[0]]]
    response = first.submit(task.id, {"groups": groups})
    assert response.status_code == 200, response.text

    ranking = db_session.scalars(
        select(Ranking).where(Ranking.task_id == task.id, Ranking.user_id == first.user.id)
    ).one()
    assert ranking.display_order == shown
    place = {sample_id: i for i, sample_id in enumerate(shown, start=1)}
    rows = db_session.execute(
        select(
            Comparison.winner_id,
            Comparison.loser_id,
            Comparison.winner_position,
            Comparison.loser_position,
        ).where(Comparison.ranking_id == ranking.id)
    ).all()
    assert len(rows) == 10
    for winner, loser, winner_place, loser_place in rows:
        assert (winner_place, loser_place) == (place[winner], place[loser])
    assert (shown[4], shown[0], 5, 1) in rows  # the last card shown beat the first


def test_a_release_after_expiry_shows_the_same_order(db_session: Session) -> None:
    """The shuffle is seeded per task and annotator, not per lease: the annotator whose lease
    expired sees the cards as before (an annotator ranks a task at most once, so every
    ranking still has its own draw)."""
    project = make_project(db_session, samples_per_prompt=6)
    make_task(db_session, project)
    user = make_member(db_session, project)
    start = utcnow()

    def shown(now: datetime) -> list[int]:
        out = service.next_task(db_session, user_id=user.id, chosen_project_id=project.id, now=now)
        assert out.task is not None
        return [s.id for s in out.task.samples]

    before = shown(start)
    assert shown(start + timedelta(hours=2)) == before
