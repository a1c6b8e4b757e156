"""Every invalid submission gets a 4xx with a message and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Assignment, Project, RankingTask, User
from tests.annotation.conftest import Annotator, best_first, make_member, snapshot
from tests.conftest import BACKEND
from tests.factories import make_task


@pytest.fixture
def annotator(
    db_session: Session, project: Project, log_in: Callable[[User], Annotator]
) -> Annotator:
    return log_in(make_member(db_session, project))


@pytest.fixture
def shown(annotator: Annotator, task: RankingTask) -> dict[str, Any]:
    """The task as leased to the annotator (JSON)."""
    body = annotator.next_task()
    assert body["task"]["id"] == task.id
    return body["task"]


def ids(task: dict[str, Any]) -> list[int]:
    return [s["id"] for s in task["samples"]]


BAD_BODIES: dict[str, Callable[[list[int]], dict[str, Any]]] = {
    "unknown_sample_id": lambda s: {"groups": [[s[0]], [s[1]], [s[2]], [s[3]], [999999]]},
    "missing_sample_id": lambda s: {"groups": [[s[0]], [s[1]], [s[2]]]},
    "repeated_sample_id": lambda s: {"groups": [[s[0]], [s[1], s[0]], [s[2]], [s[3]]]},
    "empty_group": lambda s: {"groups": [[s[0]], [], [s[1]], [s[2]], [s[3]]]},
    "no_groups": lambda s: {"groups": []},
    "none_usable_without_reason": lambda s: {"none_usable": True, "none_usable_reason": " "},
    "none_usable_with_a_ranking": lambda s: {
        "none_usable": True,
        "none_usable_reason": "bad",
        "groups": [[i] for i in s],
    },
    "flag_on_a_sample_not_in_the_task": lambda s: {
        "groups": [[i] for i in s],
        "flags": [{"sample_id": 999999, "reason": "x"}],
    },
    "sample_flagged_twice": lambda s: {
        "groups": [[i] for i in s],
        "flags": [{"sample_id": s[0]}, {"sample_id": s[0]}],
    },
    "negative_time_spent": lambda s: {"groups": [[i] for i in s], "time_spent_ms": -1},
    "ids_that_are_not_numbers": lambda s: {"groups": [["a"], ["b"]]},
    "unknown_field": lambda s: {"groups": [[i] for i in s], "winner": s[0]},
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_malformed_ranking_gets_422_and_stores_nothing(
    case: str, annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], BAD_BODIES[case](sorted(ids(shown))))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]
    assert snapshot(db_session) == before


STRICT_BODIES: dict[str, Callable[[list[int]], dict[str, Any]]] = {
    "string_ids": lambda s: {"groups": [[str(i)] for i in s]},
    "boolean_id": lambda s: {"groups": [[True], *[[i] for i in s[1:]]]},
    "float_id": lambda s: {"groups": [[float(s[0])], *[[i] for i in s[1:]]]},
    "string_flag_id": lambda s: {
        "groups": [[i] for i in s],
        "flags": [{"sample_id": str(s[0]), "reason": "x"}],
    },
    "string_time_spent": lambda s: {"groups": [[i] for i in s], "time_spent_ms": "5400"},
}


@pytest.mark.parametrize("case", sorted(STRICT_BODIES))
def test_ids_that_are_not_json_integers_get_422_naming_the_field_and_store_nothing(
    case: str, annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    """ "31" is not read as 31, nor true as 1: the string ids would otherwise be a valid
    ranking of the task."""
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], STRICT_BODIES[case](sorted(ids(shown))))

    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert details
    assert {d["message"] for d in details} == {"Input should be a valid integer"}
    assert snapshot(db_session) == before


def test_the_form_still_sends_time_spent_as_text(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    """The page posts a form: its fields are text, read as the numbers they spell."""
    before = snapshot(db_session)["rankings"]

    response = annotator.post(
        f"/annotate/tasks/{shown['id']}/submit",
        htmx=True,
        data={"groups": json.dumps(best_first(shown)), "flags": "[]", "time_spent_ms": "5400"},
    )

    assert response.status_code == 200, response.text
    assert snapshot(db_session)["rankings"] == before + 1


def test_unknown_ids_are_named_in_the_message(annotator: Annotator, shown: dict[str, Any]) -> None:
    response = annotator.submit(shown["id"], {"groups": [[i] for i in ids(shown)] + [[424242]]})

    assert "424242" in response.json()["error"]["message"]


def test_a_body_that_is_not_json_gets_422(annotator: Annotator, shown: dict[str, Any]) -> None:
    response = annotator.post(
        f"/annotate/tasks/{shown['id']}/submit",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422


@pytest.mark.parametrize("htmx", [False, True], ids=["json_body", "form_field"])
def test_json_nested_too_deeply_gets_422_and_stores_nothing(
    htmx: bool, annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    deep = "[" * 100_000
    before = snapshot(db_session)
    if htmx:
        response = annotator.post(
            f"/annotate/tasks/{shown['id']}/submit", htmx=True, data={"groups": deep}
        )
    else:
        response = annotator.post(
            f"/annotate/tasks/{shown['id']}/submit",
            content=deep.encode(),
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 422
    assert "nested too deeply" in response.text
    assert snapshot(db_session) == before


@pytest.mark.parametrize("action", ["submit", "skip"])
def test_a_task_id_too_large_for_the_database_gets_422(
    action: str, annotator: Annotator, db_session: Session
) -> None:
    before = snapshot(db_session)

    response = annotator.post(f"/annotate/tasks/{2**31}/{action}", json={"groups": [[1], [2]]})

    assert response.status_code == 422
    assert snapshot(db_session) == before


def test_text_with_a_nul_character_gets_422_on_postgresql_and_stores_nothing(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    """PostgreSQL text cannot hold NUL; SQLite stores it as it is."""
    before = snapshot(db_session)

    response = annotator.submit(
        shown["id"], {"groups": best_first(shown), "demonstration": "good\x00answer"}
    )

    if BACKEND == "postgresql":
        assert response.status_code == 422
        assert "NUL" in response.json()["error"]["message"]
        assert snapshot(db_session) == before
    else:
        assert response.status_code == 200


def test_a_task_not_leased_to_the_annotator_gets_409(
    db_session: Session, project: Project, task: RankingTask, annotator: Annotator
) -> None:
    make_task(db_session, project)  # leased to someone else below
    make_member(db_session, project)
    db_session.commit()
    before = snapshot(db_session)

    response = annotator.submit(task.id, {"groups": [[1], [2]]})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_leased"
    assert snapshot(db_session) == before


def test_a_skipped_task_cannot_be_submitted(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    assert annotator.post(f"/annotate/tasks/{shown['id']}/skip").status_code == 200
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], {"groups": best_first(shown)})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_leased"
    assert snapshot(db_session) == before


def test_an_expired_lease_gets_410(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    db_session.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], {"groups": best_first(shown)})

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "lease_expired"
    assert snapshot(db_session) == before


def test_a_lease_already_marked_expired_gets_410(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    db_session.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    annotator.next_task()  # meets the expired lease, marks it, leases the task again
    db_session.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], {"groups": best_first(shown)})

    assert response.status_code == 410
    assert snapshot(db_session) == before


def test_a_second_submission_for_the_same_task_gets_409(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    assert annotator.submit(shown["id"], {"groups": best_first(shown)}).status_code == 200
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], {"groups": best_first(shown)[::-1]})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_submitted"
    assert snapshot(db_session) == before


def test_a_task_that_does_not_exist_gets_404(annotator: Annotator, db_session: Session) -> None:
    before = snapshot(db_session)

    response = annotator.submit(987654, {"groups": [[1], [2]]})

    assert response.status_code == 404
    assert snapshot(db_session) == before


def test_a_submission_without_the_csrf_token_gets_403(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    before = snapshot(db_session)

    response = annotator.http.post(
        f"/annotate/tasks/{shown['id']}/submit",
        json={"groups": best_first(shown)},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 403
    assert snapshot(db_session) == before


def test_an_error_on_the_page_is_shown_in_the_flash_slot(
    annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    response = annotator.post(
        f"/annotate/tasks/{shown['id']}/submit",
        data={"groups": "[[999998], [999999]]", "flags": "[]", "time_spent_ms": "10"},
        htmx=True,
    )

    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#flash"
    assert "not in this task: 999998, 999999" in response.text
