"""The project page's roll back: a current version that annotators rate worse than its parent
is flagged with a button that makes the parent current again (CSRF-protected, 409 during a
round)."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session

from app.models import PolicyStatus
from tests.admin.conftest import LoggedIn
from tests.ratings.conftest import Flagged, start_active_round, versions_by_number


def rollback_url(flagged: Flagged) -> str:
    """The project page's roll-back button's target for the flagged version."""
    return f"/admin/projects/{flagged.project.id}/versions/{flagged.new.number}/rollback"


def test_the_roll_back_button_rolls_back_and_the_flag_goes(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    url = rollback_url(flagged)

    response = client.post(url, headers=admin.htmx)

    assert response.status_code == 200
    assert 'id="progress"' in response.text
    assert "Rolled back to version 1" in response.text
    assert 'id="worse-version"' not in response.text
    versions = versions_by_number(db_session, flagged.project)
    assert (versions[1].status, versions[2].status) == (PolicyStatus.current, PolicyStatus.retired)
    assert versions[2].metrics["rolled_back"]["by_user_id"] == admin.user.id


def test_the_roll_back_button_without_a_csrf_token_changes_nothing(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    url = rollback_url(flagged)

    response = client.post(url, headers={"HX-Request": "true"})

    assert response.status_code == 403
    assert versions_by_number(db_session, flagged.project)[2].status == PolicyStatus.current


def test_the_roll_back_button_during_a_round_is_a_conflict(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    start_active_round(db_session, flagged.project)
    db_session.commit()
    url = rollback_url(flagged)

    response = client.post(url, headers=admin.htmx)

    assert response.status_code == 409
    assert versions_by_number(db_session, flagged.project)[2].status == PolicyStatus.current
