"""POST /api/v1/projects/{id}/versions/{number}/rollback: a write token rolls the current
version back to its parent; a read token is refused; refusals use the error shape."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session

from app.models import PolicyStatus, User
from tests.api.conftest import MakeToken, bearer
from tests.ratings.conftest import Flagged, start_active_round, versions_by_number


def _api_url(flagged: Flagged, number: int | None = None) -> str:
    number = flagged.new.number if number is None else number
    return f"/api/v1/projects/{flagged.project.id}/versions/{number}/rollback"


def test_the_api_rolls_back_with_a_write_token(
    client: httpx.Client, make_token: MakeToken, db_session: Session, flagged: Flagged
) -> None:
    response = client.post(_api_url(flagged), headers=bearer(make_token("write")))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["retired"]["number"], body["retired"]["status"]) == (2, "retired")
    assert (body["current"]["number"], body["current"]["status"]) == (1, "current")
    assert body["retired"]["parent_id"] == flagged.base.id
    assert body["retired"]["human_verdict"] == "worse"
    assert body["retired"]["metrics"]["rolled_back"]["to_version"] == 1
    assert db_session.get(User, body["retired"]["metrics"]["rolled_back"]["by_user_id"])

    listed = client.get(
        f"/api/v1/projects/{flagged.project.id}/policies", headers=bearer(make_token("read"))
    ).json()["items"]
    assert {(v["number"], v["status"], v["human_verdict"]) for v in listed} == {
        (1, "current", None),
        (2, "retired", "worse"),
    }


def test_the_api_roll_back_needs_the_write_scope(
    client: httpx.Client, make_token: MakeToken, db_session: Session, flagged: Flagged
) -> None:
    response = client.post(_api_url(flagged), headers=bearer(make_token("read")))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert versions_by_number(db_session, flagged.project)[2].status == PolicyStatus.current


def test_the_api_roll_back_refusals_use_the_error_shape(
    client: httpx.Client, make_token: MakeToken, db_session: Session, flagged: Flagged
) -> None:
    headers = bearer(make_token("write"))

    not_current = client.post(_api_url(flagged, flagged.base.number), headers=headers)
    unknown = client.post(_api_url(flagged, 99), headers=headers)
    start_active_round(db_session, flagged.project)
    db_session.commit()
    during_round = client.post(_api_url(flagged), headers=headers)

    assert (not_current.status_code, not_current.json()["error"]["code"]) == (409, "conflict")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert (during_round.status_code, during_round.json()["error"]["code"]) == (409, "conflict")
