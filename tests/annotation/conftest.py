"""Annotators logged in over HTTP, and a snapshot of what a submit may write."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.config import get_settings
from app.deps import SESSION_COOKIE
from app.models import (
    Assignment,
    Comparison,
    Project,
    ProjectMember,
    Prompt,
    Ranking,
    RankingTask,
    Role,
    SampleFlag,
    SampleRating,
    User,
)
from app.projects import service as projects
from app.security import hash_password
from tests.factories import PASSWORD, make_project, make_task

JSON = {"Accept": "application/json"}
_numbers = itertools.count(1)


@cache
def password_hash() -> str:
    """One argon2 hash of the factories' PASSWORD for every annotator (each costs ~0.5 s)."""
    return hash_password(PASSWORD)


def make_member(session: Session, *projects: Project, username: str | None = None) -> User:
    """An annotator who works on the given projects and can log in with PASSWORD."""
    user = User(
        username=username or f"annotator{next(_numbers)}",
        role=Role.annotator,
        password_hash=password_hash(),
    )
    session.add(user)
    session.flush()
    session.add_all(ProjectMember(project_id=p.id, user_id=user.id) for p in projects)
    session.flush()
    return user


def start_session(session: Session, user: User, http: httpx.Client) -> str:
    """What a login leaves behind (session cookie; its CSRF token returned), without the
    password check: the login form has its own tests, and argon2 would dominate these."""
    issued = accounts.start_session(
        session, user=user, client_address="testclient", settings=get_settings()
    )
    http.cookies.set(SESSION_COOKIE, issued.token)
    return issued.web_session.csrf_token


def make_conversation(
    session: Session, project: Project, turns: list[str], *, system: str | None = None
) -> Prompt:
    """A multi-turn prompt: `turns` alternate user and assistant, starting (and, for a valid
    prompt, ending) with the user's; an optional system message comes first."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(turns)
    ]
    return projects.add_prompts(session, project_id=project.id, contents=[messages]).added[0]


@dataclass
class Annotator:
    """A browser (or simulated annotator) with its own cookies and CSRF token."""

    user: User
    http: httpx.Client
    csrf: str

    def post(self, path: str, *, htmx: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        headers.update({"HX-Request": "true"} if htmx else JSON)
        return self.http.post(path, headers=headers, **kwargs)

    def next_task(self) -> dict[str, Any]:
        response = self.post("/annotate/next")
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, task_id: int, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return self.post(f"/annotate/tasks/{task_id}/submit", json=body, **kwargs)

    def submit_form(self, task_id: int, form: dict[str, str]) -> httpx.Response:
        """Submit as the page's form does (HTMX, form fields)."""
        return self.post(f"/annotate/tasks/{task_id}/submit", data=form, htmx=True)


@pytest.fixture
def log_in(client: TestClient, db_session: Session) -> Iterator[Callable[[User], Annotator]]:
    """Log a user in from a browser of their own (same app, same test transaction)."""
    opened: list[TestClient] = []

    def _log_in(user: User) -> Annotator:
        db_session.commit()
        http = TestClient(client.app, base_url="http://testserver")
        opened.append(http)
        csrf = start_session(db_session, user, http)
        db_session.commit()
        return Annotator(user, http, csrf)

    yield _log_in
    for http in opened:
        http.close()


@pytest.fixture
def project(db_session: Session) -> Project:
    """Four samples a task, two annotations each."""
    return make_project(db_session, samples_per_prompt=4, annotations_per_task=2)


@pytest.fixture
def task(db_session: Session, project: Project) -> RankingTask:
    return make_task(db_session, project)


@dataclass
class Leased:
    """A task and the logged-in annotator it is leased to, as the annotator was shown it."""

    task: RankingTask
    annotator: Annotator
    shown: dict[str, Any]


def lease_one(
    session: Session, log_in: Callable[[User], Annotator], **project_overrides: Any
) -> Leased:
    """The one task of a new project, leased to a member over HTTP."""
    project = make_project(session, **project_overrides)
    task = make_task(session, project)
    annotator = log_in(make_member(session, project))
    return Leased(task, annotator, annotator.next_task()["task"])


@pytest.fixture
def leased(db_session: Session, log_in: Callable[[User], Annotator]) -> Leased:
    """The one task of a new project with default settings, leased to a member."""
    return lease_one(db_session, log_in)


def best_first(task: dict[str, Any]) -> list[list[int]]:
    """The ranking "as shown": each sample its own group, in display order."""
    return [[sample["id"]] for sample in task["samples"]]


def snapshot(session: Session) -> dict[str, Any]:
    """Everything a submit or skip writes, to show that a rejected one wrote nothing."""
    session.expire_all()

    def count(model: type) -> int:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)

    return {
        "rankings": count(Ranking),
        "comparisons": count(Comparison),
        "flags": count(SampleFlag),
        "ratings": sorted(
            session.execute(
                select(SampleRating.sample_id, SampleRating.elo, SampleRating.elo_comparisons)
            )
        ),
        "assignments": sorted(
            session.execute(select(Assignment.id, Assignment.state, Assignment.finished_at))
        ),
        "tasks": sorted(
            session.execute(
                select(RankingTask.id, RankingTask.annotations_done, RankingTask.status)
            )
        ),
        "dirty": sorted(session.execute(select(Project.id, Project.ratings_dirty_since))),
    }
