"""Accounts for simulated annotators: ordinary annotator users, members of the project.

Only password hashes are stored, so a run that reuses an account gives it a fresh random
password (which also ends its old sessions); the passwords never leave the process.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.accounts import repository as accounts_repo
from app.accounts import service as accounts
from app.errors import Conflict, InvalidInput
from app.models import Role
from app.projects import service as projects
from app.security import generate_password
from app.simulation.annotators import Credentials

MAX_ANNOTATORS = 64


def simulated_username(project_id: int, index: int) -> str:
    """Per project, so rehearsals on two projects never reset each other's passwords."""
    return f"sim-p{project_id}-{index}"


def ensure_simulated_annotators(
    session: Session, *, project_id: int, count: int
) -> list[Credentials]:
    """Create (or reuse) `count` annotators who work on the project; return their logins."""
    if not 1 <= count <= MAX_ANNOTATORS:
        raise InvalidInput(
            f"Simulate between 1 and {MAX_ANNOTATORS} annotators, not {count}",
            details={"field": "annotators"},
        )
    projects.require_project(session, project_id)
    found: list[Credentials] = []
    for index in range(1, count + 1):
        username = simulated_username(project_id, index)
        password = generate_password()
        user = accounts_repo.get_user_by_username(session, username)
        if user is None:
            user = accounts.create_user(
                session,
                username=username,
                password=password,
                role=Role.annotator,
                display_name=f"Simulated annotator {index}",
            )
        elif user.role != Role.annotator:
            raise Conflict(f"{username} exists and is not an annotator; rename it first")
        else:
            accounts.set_password(session, user_id=user.id, password=password)
            user.active = True
        projects.add_member(session, project_id=project_id, user_id=user.id)
        found.append(Credentials(username, password))
    return found
