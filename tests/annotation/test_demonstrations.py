"""An annotator's own answer ("none usable — here is a good answer") becomes a demonstration,
in the same transaction as the ranking."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Demonstration, Ranking, RankingTask, User
from tests.annotation.conftest import Annotator, Leased, best_first, make_member, snapshot
from tests.factories import make_project, make_task


def demonstrations(session: Session) -> list[tuple[int, str, str, int | None]]:
    session.expire_all()
    rows = session.execute(
        select(
            Demonstration.prompt_id,
            Demonstration.response,
            Demonstration.source,
            Demonstration.author_id,
        ).order_by(Demonstration.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_none_usable_with_a_written_answer_stores_a_demonstration_from_the_page(
    db_session: Session, leased: Leased
) -> None:
    response = leased.annotator.submit_form(
        leased.task.id,
        {
            "none_usable": "true",
            "none_usable_reason": "all off topic",
            "demonstration": "  A good, careful answer.\n",
            "flags": "[]",
        },
    )

    assert response.status_code == 200, response.text
    ranking = db_session.scalars(select(Ranking)).one()
    assert ranking.none_usable
    assert demonstrations(db_session) == [
        (leased.task.prompt_id, "A good, careful answer.", "annotator", leased.annotator.user.id)
    ]


def test_the_page_offers_the_answer_box_in_the_none_usable_form(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    annotator = log_in(make_member(db_session, project))

    fragment = annotator.post("/annotate/next", htmx=True).text

    none_form = fragment[fragment.index('id="none-form"') :]
    assert '<textarea name="demonstration"' in none_form[: none_form.index("</form>")]


def test_a_rejected_submit_stores_no_demonstration(db_session: Session, leased: Leased) -> None:
    before = snapshot(db_session)

    response = leased.annotator.submit(  # "none usable" without a reason is refused
        leased.task.id, {"none_usable": True, "demonstration": "My answer."}
    )

    assert response.status_code == 422
    assert snapshot(db_session) == before
    assert demonstrations(db_session) == []


def test_the_same_answer_from_two_annotators_is_stored_once(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, annotations_per_task=2)
    task = make_task(db_session, project)
    first = log_in(make_member(db_session, project))
    second = log_in(make_member(db_session, project))
    answers = ["Same  answer.", " Same answer. "]  # equal once whitespace is normalised

    for annotator, answer in zip((first, second), answers, strict=True):
        annotator.next_task()
        body = {"none_usable": True, "none_usable_reason": "bad", "demonstration": answer}
        assert annotator.submit(task.id, body).status_code == 200

    assert demonstrations(db_session) == [
        (task.prompt_id, "Same  answer.", "annotator", first.user.id)
    ]
    assert db_session.get(RankingTask, task.id).annotations_done == 2  # type: ignore[union-attr]


def test_a_ranking_may_carry_a_demonstration_too(db_session: Session, leased: Leased) -> None:
    response = leased.annotator.submit(
        leased.task.id,
        {"groups": best_first(leased.shown), "demonstration": "Better than all four."},
    )

    assert response.status_code == 200, response.text
    assert [d[1] for d in demonstrations(db_session)] == ["Better than all four."]
