"""A stored fit writes each version's human verdict against its parent
(PolicyVersion.human_verdict), which the leaderboard lists and the project page flags."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import PolicyKind, PolicyStatus, PolicyVersion, Project
from app.ratings import service
from app.ratings.bradley_terry import BETTER, WORSE
from tests.factories import make_project, make_user, make_version
from tests.ratings.conftest import (
    LoggedIn,
    add_members,
    flagged_project,
    prefer,
    seed_rankings,
    two_versions,
)


def _promote(db_session: Session, old: PolicyVersion, new: PolicyVersion) -> None:
    """What a promoting round does: the parent retired, the child current."""
    old.status = PolicyStatus.retired
    db_session.flush()
    new.status = PolicyStatus.current
    db_session.flush()


def _rank(
    db_session: Session,
    project: Project,
    base: PolicyVersion,
    new: PolicyVersion,
    *,
    new_wins: bool,
    tasks: int = 15,
) -> None:
    annotators = [make_user(db_session), make_user(db_session)]
    add_members(db_session, project, *annotators)
    ranker = prefer(new, base) if new_wins else prefer(base, new)
    seed_rankings(db_session, project, [base, new], annotators, tasks=tasks, rank=ranker)


@pytest.mark.parametrize(("new_wins", "expected"), [(False, WORSE), (True, BETTER)])
def test_a_stored_fit_sets_the_human_verdict_against_the_parent(
    db_session: Session, new_wins: bool, expected: str
) -> None:
    project = make_project(db_session, annotations_per_task=2)
    base, new = two_versions(db_session, project)
    _rank(db_session, project, base, new, new_wins=new_wins)

    service.recompute(db_session, project_id=project.id)

    db_session.refresh(new)
    db_session.refresh(base)
    assert new.human_verdict == expected
    assert base.human_verdict is None  # no parent
    rows = {v.id: v for v in service.leaderboard(db_session, project_id=project.id).versions}
    assert rows[new.id].human_verdict == expected


def test_a_verdict_that_no_longer_resolves_is_cleared(db_session: Session) -> None:
    project = make_project(db_session, annotations_per_task=2)
    base, new = two_versions(db_session, project)
    new.human_verdict = WORSE  # from an earlier fit
    db_session.flush()
    _rank(db_session, project, base, new, new_wins=False, tasks=2)  # too few for a verdict

    service.recompute(db_session, project_id=project.id)

    db_session.refresh(new)
    assert new.human_verdict is None


def test_a_version_judged_against_a_non_parent_gets_no_human_verdict(
    db_session: Session,
) -> None:
    """Its parent never met another version, so the leaderboard judges it against the base."""
    project = make_project(db_session, annotations_per_task=2)
    base, middle = two_versions(db_session, project)
    new = make_version(db_session, project, parent_id=middle.id, kind=PolicyKind.trained)
    _rank(db_session, project, base, new, new_wins=False)

    service.recompute(db_session, project_id=project.id)

    row = {v.id: v for v in service.leaderboard(db_session, project_id=project.id).versions}
    assert (row[new.id].previous_version_id, row[new.id].verdict) == (base.id, WORSE)
    db_session.refresh(new)
    assert new.human_verdict is None


def test_the_project_page_flags_a_current_version_rated_worse_with_a_roll_back_button(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    flagged = flagged_project(db_session)
    project = flagged.project

    page = client.get(f"/admin/projects/{project.id}")
    board = client.get(f"/admin/projects/{project.id}/leaderboard")

    assert page.status_code == 200
    assert 'id="worse-version"' in page.text
    assert f"/admin/projects/{project.id}/versions/2/rollback" in page.text
    assert "Roll back to version 1</button>" in page.text
    assert 'class="error human-verdict"' in board.text


def test_the_project_page_has_no_flag_when_the_current_version_is_better(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = make_project(db_session, annotations_per_task=2)
    base, new = two_versions(db_session, project)
    _promote(db_session, base, new)
    _rank(db_session, project, base, new, new_wins=True)
    service.recompute(db_session, project_id=project.id)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}")

    assert page.status_code == 200
    assert 'id="worse-version"' not in page.text
    assert "/rollback" not in page.text
