"""Judges stay out of people's lists (gold accuracy per annotator, rankings per annotator) and
out of the ratings' refresh, unless the project counts judges in its human figures."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.gold import service as gold
from app.models import Project, RankingTask, Role, User
from app.projects import service as projects
from tests.factories import make_project, make_ranking, make_task, make_user, task_sample_ids
from tests.helpers import login_new_user
from tests.judges.test_uses import make_ai_ranking, make_judge_user


def _ranked_by_person_and_judge(
    session: Session, *, counted_in: bool, gold_task: bool = False
) -> tuple[Project, RankingTask, User, User]:
    project = make_project(session, judges_in_human_figures=counted_in)
    task = make_task(session, project, k=3)
    a, b, c = task_sample_ids(session, task)
    person = make_user(session, username=f"person-{project.id}")
    judge = make_judge_user(session)
    judge.username = f"judge-{project.id}"
    make_ranking(session, task, person, [[a], [b], [c]])
    make_ai_ranking(session, task, judge, [[c], [b], [a]])
    if gold_task:
        gold.mark_gold(session, project_id=project.id, task_id=task.id, groups=[[a], [b], [c]])
    session.flush()
    return project, task, person, judge


# Gold accuracy per annotator


@pytest.mark.parametrize("counted_in", [False, True])
def test_gold_accuracy_lists_judges_only_when_they_count_as_people(
    db_session: Session, counted_in: bool
) -> None:
    project, _, person, judge = _ranked_by_person_and_judge(
        db_session, counted_in=counted_in, gold_task=True
    )

    listed = {
        row.user_id: row.accuracy
        for row in gold.annotator_accuracy(db_session, project_id=project.id)
    }

    expected = {person.id: 1.0, judge.id: 0.0} if counted_in else {person.id: 1.0}
    assert listed == expected
    # The judge's own gold figure (its measures page) is kept either way
    assert gold.gold_accuracy(db_session, project.id)[judge.id] == (3, 0.0)


def test_the_gold_page_shows_people_only(client: httpx.Client, db_session: Session) -> None:
    project, _, person, judge = _ranked_by_person_and_judge(
        db_session, counted_in=False, gold_task=True
    )
    login_new_user(client, db_session, f"gold-admin-{project.id}", role=Role.admin)

    page = client.get(f"/admin/projects/{project.id}/gold")

    assert page.status_code == 200
    assert f'id="gold-annotator-{person.id}"' in page.text
    assert f'id="gold-annotator-{judge.id}"' not in page.text
    assert "People only" in page.text


# Rankings per annotator on the project page


@pytest.mark.parametrize("counted_in", [False, True])
def test_rankings_per_annotator_list_judges_only_when_they_count_as_people(
    db_session: Session, counted_in: bool
) -> None:
    project, _, person, judge = _ranked_by_person_and_judge(db_session, counted_in=counted_in)

    rows = projects.progress(db_session, project_id=project.id).rankings_by_annotator

    names = {row.username for row in rows}
    assert names == ({person.username, judge.username} if counted_in else {person.username})


def test_the_project_page_lists_people_only(client: httpx.Client, db_session: Session) -> None:
    project, _, person, judge = _ranked_by_person_and_judge(db_session, counted_in=False)
    login_new_user(client, db_session, f"project-admin-{project.id}", role=Role.admin)

    page = client.get(f"/admin/projects/{project.id}")

    assert page.status_code == 200
    table = page.text.split('id="rankings-per-annotator"', 1)[1].split("</table>", 1)[0]
    assert person.username in table
    assert judge.username not in table
