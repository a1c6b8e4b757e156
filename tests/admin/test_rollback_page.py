"""The project page's roll back: a current version that annotators rate worse than its parent
is flagged with a button that makes the parent current again (CSRF-protected, 409 during a
round)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import PolicyStatus, PolicyVersion, Project, RoundType, TrainingRound
from tests.admin.conftest import LoggedIn
from tests.ratings.conftest import Flagged, flagged_project


@pytest.fixture
def flagged(db_session: Session) -> Flagged:
    return flagged_project(db_session)


def _versions(db_session: Session, project: Project) -> dict[int, PolicyVersion]:
    db_session.expire_all()
    rows = db_session.scalars(select(PolicyVersion).where(PolicyVersion.project_id == project.id))
    return {v.number: v for v in rows}


def _start_round(db_session: Session, project: Project) -> None:
    db_session.add(TrainingRound(project_id=project.id, number=1, type=RoundType.dpo))
    db_session.flush()


def test_the_roll_back_button_rolls_back_and_the_flag_goes(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    url = f"/admin/projects/{flagged.project.id}/versions/{flagged.new.number}/rollback"

    response = client.post(url, headers=admin.htmx)

    assert response.status_code == 200
    assert 'id="progress"' in response.text
    assert "Rolled back to version 1" in response.text
    assert 'id="worse-version"' not in response.text
    versions = _versions(db_session, flagged.project)
    assert (versions[1].status, versions[2].status) == (PolicyStatus.current, PolicyStatus.retired)
    assert versions[2].metrics["rolled_back"]["by_user_id"] == admin.user.id


def test_the_roll_back_button_without_a_csrf_token_changes_nothing(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    url = f"/admin/projects/{flagged.project.id}/versions/{flagged.new.number}/rollback"

    response = client.post(url, headers={"HX-Request": "true"})

    assert response.status_code == 403
    assert _versions(db_session, flagged.project)[2].status == PolicyStatus.current


def test_the_roll_back_button_during_a_round_is_a_conflict(
    client: httpx.Client, admin: LoggedIn, db_session: Session, flagged: Flagged
) -> None:
    _start_round(db_session, flagged.project)
    db_session.commit()
    url = f"/admin/projects/{flagged.project.id}/versions/{flagged.new.number}/rollback"

    response = client.post(url, headers=admin.htmx)

    assert response.status_code == 409
    assert _versions(db_session, flagged.project)[2].status == PolicyStatus.current
