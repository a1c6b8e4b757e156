"""Marking and unmarking gold tasks: service, API and admin page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.gold import service as gold
from app.models import Comparison, Project, RankingTask, Role, TaskStatus
from app.ratings import repository as ratings_repo
from tests.annotation.conftest import make_member
from tests.export.seed import add_ranking
from tests.factories import make_project, make_task, task_sample_ids
from tests.helpers import login_new_user


def _comparison_gold(session: Session, task: RankingTask) -> set[bool]:
    session.expire_all()
    return set(session.scalars(select(Comparison.gold).where(Comparison.task_id == task.id)))


def _state(session: Session, task_id: int) -> tuple[Any, ...]:
    session.expire_all()
    task = session.get(RankingTask, task_id)
    assert task is not None
    return (task.gold, task.gold_groups, task.gold_bad_sample_id, task.status)


# Service


def test_marking_a_ranked_task_makes_its_comparisons_gold_and_unmarking_reverses_it(
    db_session: Session,
) -> None:
    project = make_project(db_session, annotations_per_task=1)
    task = make_task(db_session, project)
    ids = task_sample_ids(db_session, task)
    user = make_member(db_session, project)
    add_ranking(db_session, task, user.id, [[i] for i in ids])
    task.annotations_done, task.status = 1, TaskStatus.complete
    db_session.flush()

    gold.mark_gold(db_session, project_id=project.id, task_id=task.id, bad_sample_id=ids[-1])

    assert _comparison_gold(db_session, task) == {True}
    assert _state(db_session, task.id) == (True, None, ids[-1], TaskStatus.open)
    assert len(ratings_repo.load_comparisons(db_session, project.id, include_excluded=True)) == 0

    gold.unmark_gold(db_session, project_id=project.id, task_id=task.id)

    assert _comparison_gold(db_session, task) == {False}
    assert _state(db_session, task.id) == (False, None, None, TaskStatus.complete)
    assert len(ratings_repo.load_comparisons(db_session, project.id, include_excluded=True)) == 6


def test_gold_accuracy_counts_pairs_and_ties_half(db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    a, b, c, d = task_sample_ids(db_session, task)
    right, reversed_, tied = (make_member(db_session, project) for _ in range(3))
    add_ranking(db_session, task, right.id, [[a], [b], [c], [d]])
    add_ranking(db_session, task, reversed_.id, [[d], [c], [b], [a]])
    add_ranking(db_session, task, tied.id, [[a, b, c, d]])
    gold.mark_gold(db_session, project_id=project.id, task_id=task.id, groups=[[a], [b, c], [d]])

    accuracy = gold.gold_accuracy(db_session, project.id)

    # 5 pairs judged (b-c is tied in the answer)
    assert accuracy == {right.id: (5, 5.0), reversed_.id: (5, 0.0), tied.id: (5, 2.5)}
    [row] = gold.list_gold_tasks(db_session, project_id=project.id)
    assert (row.answered, row.agreed, row.pairs, row.pairs_correct) == (3, 1, 15, 7.5)


def test_a_known_bad_sample_is_judged_only_on_its_pairs(db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    a, b, c, d = task_sample_ids(db_session, task)
    user = make_member(db_session, project)
    add_ranking(db_session, task, user.id, [[a], [d], [b], [c]])  # d beats b and c
    gold.mark_gold(db_session, project_id=project.id, task_id=task.id, bad_sample_id=d)

    assert gold.gold_accuracy(db_session, project.id) == {user.id: (3, 1.0)}


# API


def _url(project: Project) -> str:
    return f"/api/v1/projects/{project.id}/gold-tasks"


def test_api_marks_lists_and_unmarks(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    ids = task_sample_ids(db_session, task)
    db_session.commit()

    created = client.post(
        _url(project), json={"task_id": task.id, "groups": [[i] for i in ids]}, headers=writer
    )
    assert created.status_code == 201, created.text
    assert created.json()["groups"] == [[i] for i in ids]

    listed = client.get(_url(project), headers=writer)
    assert [t["task_id"] for t in listed.json()["items"]] == [task.id]
    assert listed.json()["next_cursor"] is None

    deleted = client.delete(f"{_url(project)}/{task.id}", headers=writer)
    assert deleted.status_code == 204
    assert client.get(_url(project), headers=writer).json()["items"] == []


def test_api_pages_gold_tasks(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session)
    tasks = [make_task(db_session, project) for _ in range(3)]
    for task in tasks:
        gold.mark_gold(
            db_session,
            project_id=project.id,
            task_id=task.id,
            bad_sample_id=task_sample_ids(db_session, task)[0],
        )
    db_session.commit()

    first = client.get(_url(project), params={"limit": 2}, headers=writer).json()
    second = client.get(
        _url(project), params={"limit": 2, "cursor": first["next_cursor"]}, headers=writer
    ).json()

    assert [t["task_id"] for t in first["items"] + second["items"]] == [t.id for t in tasks]
    assert second["next_cursor"] is None


def test_api_rejects_bad_requests_and_changes_nothing(
    client: httpx.Client, db_session: Session, writer: dict[str, str], reader: dict[str, str]
) -> None:
    project, other = make_project(db_session), make_project(db_session)
    task, foreign = make_task(db_session, project), make_task(db_session, other)
    ids = task_sample_ids(db_session, task)
    db_session.commit()
    before = _state(db_session, task.id)
    cases = [
        ({"task_id": foreign.id, "bad_sample_id": ids[0]}, 404, writer),
        ({"task_id": task.id, "groups": [[ids[0]], [ids[1]]]}, 422, writer),  # not all samples
        ({"task_id": task.id, "groups": [[ids[0], ids[0]], ids[1:]]}, 422, writer),
        ({"task_id": task.id, "groups": [ids]}, 422, writer),  # all tied
        ({"task_id": task.id, "groups": [[i] for i in ids], "bad_sample_id": ids[0]}, 422, writer),
        ({"task_id": task.id}, 422, writer),
        ({"task_id": task.id, "bad_sample_id": 999_999}, 422, writer),
        ({"task_id": task.id, "bad_sample_id": ids[0]}, 403, reader),
    ]
    for body, status, headers in cases:
        response = client.post(_url(project), json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]

    assert client.delete(f"{_url(project)}/{task.id}", headers=writer).status_code == 404
    assert _state(db_session, task.id) == before


# Admin page


def test_admin_marks_a_task_from_the_gold_page_seeing_its_texts(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project, texts=["Alpha", "Bravo", "Charlie", "Delta"])
    a, b, c, d = task_sample_ids(db_session, task)
    csrf = login_new_user(client, db_session, "gold-admin", role=Role.admin)
    assert f"/admin/projects/{project.id}/gold" in client.get(f"/admin/projects/{project.id}").text

    page = client.get(f"/admin/projects/{project.id}/gold", params={"task_id": task.id})
    assert page.status_code == 200
    assert all(text in page.text for text in ["Alpha", "Bravo", "Charlie", "Delta"])

    marked = client.post(
        f"/admin/projects/{project.id}/gold/mark",
        data={
            "csrf_token": csrf,
            "task_id": str(task.id),
            "sample_id": [str(a), str(b), str(c), str(d)],
            "rank": ["2", "1", "2", "3"],
        },
    )
    assert marked.status_code == 200, marked.text
    assert _state(db_session, task.id)[:2] == (True, [[b], [a, c], [d]])
    assert re.search(rf'id="gold-task-{task.id}"', marked.text)

    bad = client.post(
        f"/admin/projects/{project.id}/gold/mark-bad",
        data={"csrf_token": csrf, "task_id": str(task.id), "bad_sample_id": str(d)},
    )
    assert bad.status_code == 200
    assert _state(db_session, task.id)[:3] == (True, None, d)

    unmarked = client.post(
        f"/admin/projects/{project.id}/gold/{task.id}/unmark", data={"csrf_token": csrf}
    )
    assert unmarked.status_code == 200
    assert _state(db_session, task.id)[0] is False


def test_the_gold_form_without_csrf_is_refused(client: httpx.Client, db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    login_new_user(client, db_session, "gold-admin2", role=Role.admin)

    response = client.post(
        f"/admin/projects/{project.id}/gold/mark-bad",
        data={"task_id": str(task.id), "bad_sample_id": str(task_sample_ids(db_session, task)[0])},
    )

    assert response.status_code == 403
    assert _state(db_session, task.id)[0] is False


def test_a_bad_rank_on_the_form_is_422_and_changes_nothing(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    ids = task_sample_ids(db_session, task)
    csrf = login_new_user(client, db_session, "gold-admin3", role=Role.admin)

    response = client.post(
        f"/admin/projects/{project.id}/gold/mark",
        data={
            "csrf_token": csrf,
            "task_id": str(task.id),
            "sample_id": [str(i) for i in ids],
            "rank": ["1", "x", "2", "3"],
        },
    )

    assert response.status_code == 422
    assert _state(db_session, task.id)[0] is False


def test_admin_marks_a_recently_ranked_task_gold_from_its_consensus(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)
    a, b, c, d = task_sample_ids(db_session, task)
    for groups in ([[c], [a], [d], [b]], [[c], [a], [b], [d]], [[c], [d], [a], [b]]):
        add_ranking(db_session, task, make_member(db_session, project).id, groups)
    csrf = login_new_user(client, db_session, "gold-admin4", role=Role.admin)
    page = client.get(f"/admin/projects/{project.id}/gold")
    assert f'id="recent-task-{task.id}"' in page.text

    response = client.post(
        f"/admin/projects/{project.id}/gold/{task.id}/from-consensus", data={"csrf_token": csrf}
    )

    assert response.status_code == 200, response.text
    gold_flag, groups, *_ = _state(db_session, task.id)
    assert gold_flag is True
    assert groups == [[c], [a], [d], [b]]
    assert f'id="recent-task-{task.id}"' not in response.text  # gold now, not ordinary


def test_a_task_without_rankings_cannot_be_marked_from_consensus(db_session: Session) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project)

    with pytest.raises(InvalidInput):
        gold.mark_gold_from_consensus(db_session, project_id=project.id, task_id=task.id)
    assert _state(db_session, task.id)[0] is False
