"""`rankloop demo`: a working RankLoop on a laptop, with no Postgres, Redis or GPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.accounts import repository as accounts_repo
from app.accounts import service as accounts
from app.config import Settings
from app.models import Project, Role, User
from app.projects import repository as projects_repo
from app.projects import service as projects
from app.security import generate_password, hash_password

DEMO_PROJECT = "Demo: friendly assistant"
DEMO_PROMPTS = Path(__file__).resolve().parent / "data" / "demo_prompts.jsonl"
DEMO_GUIDELINES = """\
Rank the answers **best first**.

- Prefer answers that respond to the prompt, are polite, and read well.
- Drag a card (or press its number key, then use the arrow keys) to reorder.
- Tie two answers when you cannot tell them apart.
- Flag anything harmful; use *none usable* when every answer is unusable.
"""


@dataclass(frozen=True)
class DemoAccounts:
    admin_password: str
    annotator_password: str
    project_id: int


def load_demo_prompts() -> list[str]:
    lines = DEMO_PROMPTS.read_text().splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]


def _user_with_new_password(session: Session, username: str, role: Role) -> tuple[User, str]:
    """Create the demo user, or give an existing one a fresh password (printed once)."""
    password = generate_password()
    user = accounts_repo.get_user_by_username(session, username)
    if user is None:
        user = accounts.create_user(session, username=username, password=password, role=role)
    else:
        user.password_hash = hash_password(password)
        user.active = True
    return user, password


def prepare_demo(session: Session, settings: Settings) -> DemoAccounts:
    """Users, a project and its prompts; the model and samples are prepared by the worker."""
    admin, admin_password = _user_with_new_password(session, "admin", Role.admin)
    annotator, annotator_password = _user_with_new_password(session, "annotator", Role.annotator)
    project: Project | None = projects_repo.get_project_by_name(session, DEMO_PROJECT)
    if project is None:
        project = projects.create_project(
            session,
            name=DEMO_PROJECT,
            base_model=settings.default_base_model,
            samples_per_prompt=4,
            annotations_per_task=1,
            max_new_tokens=48,
            guidelines=DEMO_GUIDELINES,
            description="A tiny local model learns to answer politely from your rankings.",
        )
    projects.add_member(session, project_id=project.id, user_id=annotator.id)
    projects.add_member(session, project_id=project.id, user_id=admin.id)
    projects.add_prompts(session, project_id=project.id, contents=load_demo_prompts())
    return DemoAccounts(admin_password, annotator_password, project.id)
