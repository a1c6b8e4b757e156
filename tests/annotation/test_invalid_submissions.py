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


@pytest.mark.parametrize(
    ("task_id", "action", "status"),
    [(2**31, "submit", 422), (2**31, "skip", 422), (987654, "submit", 404)],
    ids=["too_large_for_the_database_submit", "too_large_for_the_database_skip", "does_not_exist"],
)
def test_a_task_id_that_names_no_task_is_refused_and_stores_nothing(
    task_id: int, action: str, status: int, annotator: Annotator, db_session: Session
) -> None:
    """An id too large for the database column is a 422; one that fits but names no task, 404."""
    before = snapshot(db_session)

    response = annotator.post(f"/annotate/tasks/{task_id}/{action}", json={"groups": [[1], [2]]})

    assert response.status_code == status
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


def expire_leases(session: Session) -> None:
    """Every lease ran out a second ago."""
    session.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()


def _skipped(annotator: Annotator, shown: dict[str, Any], session: Session) -> None:
    assert annotator.post(f"/annotate/tasks/{shown['id']}/skip").status_code == 200


def _lease_ran_out(annotator: Annotator, shown: dict[str, Any], session: Session) -> None:
    expire_leases(session)


def _lease_marked_expired(annotator: Annotator, shown: dict[str, Any], session: Session) -> None:
    expire_leases(session)
    annotator.next_task()  # meets the expired lease, marks it, leases the task again
    expire_leases(session)


def _submitted(annotator: Annotator, shown: dict[str, Any], session: Session) -> None:
    assert annotator.submit(shown["id"], {"groups": best_first(shown)}).status_code == 200


def _reversed(shown: dict[str, Any]) -> list[list[int]]:
    return best_first(shown)[::-1]


# What happened to the lease first, the ranking sent then, the status and the error code (if
# the case checks it).
LEASE_REFUSALS: dict[str, tuple[Callable[..., None], Callable[..., Any], int, str | None]] = {
    "a_skipped_task_cannot_be_submitted": (_skipped, best_first, 409, "not_leased"),
    "an_expired_lease_gets_410": (_lease_ran_out, best_first, 410, "lease_expired"),
    "a_lease_already_marked_expired_gets_410": (_lease_marked_expired, best_first, 410, None),
    "a_second_submission_for_the_same_task_gets_409": (
        _submitted,
        _reversed,
        409,
        "already_submitted",
    ),
}


@pytest.mark.parametrize("case", list(LEASE_REFUSALS))
def test_a_submission_the_lease_no_longer_allows_is_refused_and_stores_nothing(
    case: str, annotator: Annotator, shown: dict[str, Any], db_session: Session
) -> None:
    happened, ranking, status, code = LEASE_REFUSALS[case]
    happened(annotator, shown, db_session)
    before = snapshot(db_session)

    response = annotator.submit(shown["id"], {"groups": ranking(shown)})

    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code
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
