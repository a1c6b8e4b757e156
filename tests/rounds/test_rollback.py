"""Rolling the current version back to its parent (app.rounds.rollback): the parent is current
again, the version retired with its lineage kept; a round in progress, a version that is not
current or has no parent refuses. The page's button: tests/admin/test_rollback_page.py; the
API: tests/api/test_rollback_api.py."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import PolicyStatus, Role
from app.rounds import repository
from app.rounds.rollback import roll_back
from app.sampling import service as sampling
from tests.factories import make_project, make_prompt, make_user
from tests.ratings.conftest import Flagged, start_active_round, versions_by_number


def test_roll_back_makes_the_parent_current_and_keeps_the_lineage(
    db_session: Session, flagged: Flagged
) -> None:
    user = make_user(db_session, role=Role.admin, username="rollbacker")

    done = roll_back(
        db_session, project_id=flagged.project.id, number=flagged.new.number, user_id=user.id
    )

    versions = versions_by_number(db_session, flagged.project)
    assert (done.retired.id, done.current.id) == (flagged.new.id, flagged.base.id)
    assert sorted(versions) == [1, 2]  # both still listed
    assert versions[1].status == PolicyStatus.current
    assert versions[2].status == PolicyStatus.retired
    assert versions[2].parent_id == flagged.base.id
    record = versions[2].metrics["rolled_back"]
    assert (record["by_user_id"], record["by"], record["to_version"]) == (user.id, "rollbacker", 1)
    assert record["human_verdict"] == "worse"
    assert record["at"]
    assert repository.current_version(db_session, flagged.project.id).id == flagged.base.id


def test_after_a_roll_back_sampling_draws_from_the_parent(
    db_session: Session, flagged: Flagged
) -> None:
    make_prompt(db_session, flagged.project)  # a prompt no version has a task for yet
    roll_back(db_session, project_id=flagged.project.id, number=flagged.new.number, user_id=None)

    job = sampling.start_sampling(db_session, project_id=flagged.project.id, enqueue=False)

    assert job is not None
    assert job.policy_version_id == flagged.base.id


def test_roll_back_is_refused_while_a_round_is_active(
    db_session: Session, flagged: Flagged
) -> None:
    start_active_round(db_session, flagged.project)

    with pytest.raises(Conflict, match="still queued"):
        roll_back(
            db_session, project_id=flagged.project.id, number=flagged.new.number, user_id=None
        )

    versions = versions_by_number(db_session, flagged.project)
    assert (versions[1].status, versions[2].status) == (PolicyStatus.retired, PolicyStatus.current)


def test_roll_back_of_a_version_that_is_not_current_is_refused(
    db_session: Session, flagged: Flagged
) -> None:
    with pytest.raises(Conflict, match="not current"):
        roll_back(
            db_session, project_id=flagged.project.id, number=flagged.base.number, user_id=None
        )

    assert versions_by_number(db_session, flagged.project)[2].status == PolicyStatus.current


def test_roll_back_of_a_version_without_a_parent_is_refused(db_session: Session) -> None:
    project = make_project(db_session)

    with pytest.raises(Conflict, match="no parent"):
        roll_back(db_session, project_id=project.id, number=1, user_id=None)

    assert versions_by_number(db_session, project)[1].status == PolicyStatus.current


def test_roll_back_of_an_unknown_version_or_project_is_not_found(
    db_session: Session, flagged: Flagged
) -> None:
    with pytest.raises(NotFound):
        roll_back(db_session, project_id=flagged.project.id, number=99, user_id=None)
    with pytest.raises(NotFound):
        roll_back(db_session, project_id=999_999, number=1, user_id=None)
