"""Rolling a project back from its current version to that version's parent.

What the leaderboard's human verdict offers when annotators rate the current version worse than
the version it was trained from (PolicyVersion.human_verdict). Lineage is kept: the version
stays listed, retired, with its parent_id, and records who rolled it back and when. Sampling
and the next round start from whatever version is current, so they go on from the parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.models import PolicyStatus, PolicyVersion, User
from app.projects import repository as projects_repository
from app.ratings.bradley_terry import WORSE
from app.rounds import repository


@dataclass(frozen=True)
class RollBack:
    retired: PolicyVersion
    """The version rolled back from (now retired)."""
    current: PolicyVersion
    """Its parent, current again."""


def roll_back(
    session: Session,
    *,
    project_id: int,
    number: int,
    user_id: int | None,
    now: datetime | None = None,
) -> RollBack:
    """Make version `number`'s parent current again and retire the version.

    Refused (409) while a round is active (it trains from, and may register a successor of,
    the current version) and for a version that is not current. The project row is locked
    first, so a sampling top-up does not pick the current version while it changes.
    """
    project = projects_repository.lock_project(session, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}")
    version = _version(session, project_id, number)
    if version is None:
        raise NotFound(f"Project {project.name!r} has no version {number}")
    active = repository.active_round(session, project_id)
    if active is not None:
        raise Conflict(
            f"Round {active.number} of {project.name!r} is still {active.state.value}; "
            "wait for it or cancel it before rolling back"
        )
    if version.status != PolicyStatus.current:
        raise Conflict(
            f"Version {number} is {version.status.value}, not current; only the current "
            "version can be rolled back"
        )
    parent = session.get(PolicyVersion, version.parent_id) if version.parent_id else None
    if parent is None:
        raise Conflict(f"Version {number} has no parent to roll back to")

    user = session.get(User, user_id) if user_id is not None else None
    version.status = PolicyStatus.retired
    version.metrics = {
        **(version.metrics or {}),
        "rolled_back": {
            "at": (now or utcnow()).isoformat(),
            "by_user_id": user_id,
            "by": user.username if user else None,
            "to_version": parent.number,
            "human_verdict": version.human_verdict,
        },
    }
    session.flush()  # one current version per project (a partial unique index): retire first
    parent.status = PolicyStatus.current
    session.flush()
    return RollBack(retired=version, current=parent)


@dataclass(frozen=True)
class WorseVersion:
    """The current version, when annotators rate it worse than its parent."""

    number: int
    name: str
    parent_number: int
    parent_name: str


def worse_current_version(session: Session, *, project_id: int) -> WorseVersion | None:
    """What the project page flags, with a roll back to the parent."""
    current = repository.current_version(session, project_id)
    if current is None or current.human_verdict != WORSE or current.parent_id is None:
        return None
    parent = session.get(PolicyVersion, current.parent_id)
    if parent is None:
        return None
    return WorseVersion(current.number, current.name, parent.number, parent.name)


def _version(session: Session, project_id: int, number: int) -> PolicyVersion | None:
    return session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.number == number
        )
    )
