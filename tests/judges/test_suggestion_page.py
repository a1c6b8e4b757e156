"""Suggestion mode on the ranking page, as the annotator's browser gets it (rendered HTML over
TestClient; no Chromium on the build machines, so no Playwright run): on a 'shown' lease the
page carries the marked AI suggestion beside the cards, the cards stay in the annotator's own
shuffled order with nothing pre-ranked, and the page's form submits the person's order."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.service import display_order
from app.models import Assignment, Judge, Ranking, User
from tests.annotation.conftest import Annotator, log_in, make_member
from tests.factories import make_project, make_task, task_sample_ids
from tests.judges.test_uses import make_ai_ranking, make_judge_user

__all__ = ["log_in"]

SAMPLE_ID = re.compile(r'<li class="sample"[^>]*data-sample-id="(\d+)"')


def test_a_shown_suggestion_is_a_marked_box_the_cards_ignore_and_the_form_submits(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(
        db_session, samples_per_prompt=4, judge_suggestions=True, suggestion_control_share=0.0
    )
    task = make_task(db_session, project)
    member = make_member(db_session, project)
    shown = display_order(task.id, member.id, task_sample_ids(db_session, task))
    judge_user = make_judge_user(db_session)
    judge = Judge(
        project_id=project.id, user_id=judge_user.id, name="critic", backend="simulated", model="m"
    )
    db_session.add(judge)
    db_session.flush()
    judge_groups = [[sample_id] for sample_id in reversed(shown)]  # last card first
    make_ai_ranking(db_session, task, judge_user, judge_groups, judge_id=judge.id)
    annotator = log_in(member)

    page = annotator.post("/annotate/next", htmx=True)

    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="ai-suggestion"' in html
    assert "AI suggestion — check it yourself" in html
    box = html.split('id="ai-suggestion"', 1)[1].split("</aside>", 1)[0]
    numbers = re.findall(r'<span class="sample-number">(\d+)</span>', box)
    assert numbers == ["4", "3", "2", "1"]  # the judge's order, by card number
    cards = html.split('id="ranking"', 1)[1]
    assert [int(i) for i in SAMPLE_ID.findall(cards)] == shown  # not the judge's order
    assert '<input type="hidden" name="groups" value="">' in html  # nothing pre-ranked
    lease = db_session.scalars(
        select(Assignment).where(Assignment.task_id == task.id, Assignment.user_id == member.id)
    ).one()
    db_session.refresh(lease)
    assert lease.suggestion == "shown"

    mine = [[shown[1]], [shown[0]], [shown[2], shown[3]]]
    submitted = annotator.submit_form(
        task.id, {"groups": str(mine), "flags": "[]", "time_spent_ms": "900"}
    )

    assert submitted.status_code == 200, submitted.text
    assert f"Saved task {task.id}." in submitted.text
    ranking = db_session.scalars(
        select(Ranking).where(Ranking.task_id == task.id, Ranking.user_id == member.id)
    ).one()
    db_session.refresh(ranking)
    assert (ranking.groups, ranking.source, ranking.suggestion) == (mine, "human", "shown")
