"""Tokens for API tests: each fixture returns a function making a token with given scopes;
committed projects to post to, and the stages a started round sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project, Role
from app.rounds import service as rounds
from app.tokens import service as tokens
from tests.factories import make_project, make_ready_project, make_user

MakeToken = Callable[..., str]
NDJSON = "application/x-ndjson"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def count(session: Session, model: type, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def post_content(
    client: httpx.Client,
    url: str,
    content: bytes,
    headers: dict[str, str],
    content_type: str = NDJSON,
    **kwargs: Any,
) -> httpx.Response:
    """POST a raw body with its Content-Type (and the token's headers)."""
    return client.post(
        url, content=content, headers={**headers, "Content-Type": content_type}, **kwargs
    )


@pytest.fixture
def make_token(db_session: Session) -> MakeToken:
    """Committed (savepoint) tokens made by an admin, so a failing request keeps them."""
    admin = make_user(db_session, role=Role.admin)

    def make(*scopes: str, name: str = "test") -> str:
        issued = tokens.create_token(
            db_session, name=name, scopes=list(scopes), created_by_id=admin.id
        )
        db_session.commit()
        return issued.secret

    return make


@pytest.fixture
def reader(make_token: MakeToken) -> dict[str, str]:
    return bearer(make_token("read"))


@pytest.fixture
def writer(make_token: MakeToken) -> dict[str, str]:
    return bearer(make_token("read", "write"))


@pytest.fixture
def sent_stages(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Stages sent to the workers (after commit); no broker needed."""
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(rounds, "send_stage", lambda rid, stage: sent.append((rid, stage)))
    return sent


@pytest.fixture
def project(db_session: Session) -> Project:
    """A committed project, so a request that fails keeps it."""
    made = make_project(db_session)
    db_session.commit()
    return made


@pytest.fixture
def ready_project(db_session: Session) -> Project:
    """A committed project any round type may start on."""
    made = make_ready_project(db_session)
    db_session.commit()
    return made


@dataclass
class RoundPosts:
    """Round bodies posted to one committed project with a write token, and the stages sent."""

    client: httpx.Client
    project: Project
    headers: dict[str, str]
    sent_stages: list[tuple[int, str]]

    @property
    def url(self) -> str:
        return f"/api/v1/projects/{self.project.id}/rounds"

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(self.url, json=body, headers=self.headers)

    def post_content(self, content: bytes, content_type: str) -> httpx.Response:
        return post_content(self.client, self.url, content, self.headers, content_type)


RoundsApi = Callable[[Project], RoundPosts]


@pytest.fixture
def rounds_api(
    client: httpx.Client, writer: dict[str, str], sent_stages: list[tuple[int, str]]
) -> RoundsApi:
    """Post round bodies to a given project with a write token."""
    return lambda project: RoundPosts(client, project, writer, sent_stages)
