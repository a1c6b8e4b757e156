"""Logged-in clients for the admin page tests, a committed project, and the upload forms."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import security
from app.models import Project, Role, User
from tests.factories import make_project, make_user
from tests.helpers import login


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its real cost takes about a second per login on a busy CI box; these tests are
    about pages, not hashing (tests/app/test_accounts.py covers that at full cost)."""
    monkeypatch.setattr(
        security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@dataclass
class LoggedIn:
    user: User
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        """What a plain form post sends (the token also works as a header)."""
        return {"X-CSRF-Token": self.csrf}

    @property
    def htmx(self) -> dict[str, str]:
        """What an HTMX request from a page sends."""
        return {"X-CSRF-Token": self.csrf, "HX-Request": "true"}


@pytest.fixture
def admin(client: httpx.Client, db_session: Session) -> LoggedIn:
    """`client` logged in as an admin; setup rows are committed so a failing request keeps them."""
    user = make_user(db_session, username="root", role=Role.admin)
    db_session.commit()
    return LoggedIn(user, login(client, "root"))


@pytest.fixture
def second_client(client: TestClient) -> TestClient:
    """Another browser on the same app and test transaction."""
    with TestClient(client.app, base_url="http://testserver") as other:
        yield other  # type: ignore[misc]


@pytest.fixture
def project(db_session: Session) -> Project:
    """A committed project, so a request that fails keeps it."""
    made = make_project(db_session)
    db_session.commit()
    return made


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def jsonl(*records: object) -> bytes:
    """Records as JSON Lines."""
    return b"\n".join(json.dumps(record).encode() for record in records)


def upload(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def post_file(
    client: httpx.Client,
    url: str,
    name: str,
    content: bytes,
    headers: dict[str, str],
    **kwargs: Any,
) -> httpx.Response:
    """A file sent as an upload form sends it (other form fields in `data=`)."""
    return client.post(url, files=upload(name, content), headers=headers, **kwargs)


def import_token(preview: httpx.Response) -> str:
    """The token an import preview carries to its confirm form."""
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token
    return token.group(1)


def shown_counts(page: httpx.Response) -> dict[str, int]:
    """The counts a preview or report shows (`<strong data-count="new">2</strong>` -> new: 2)."""
    found = re.findall(r'<strong data-count="([^"]+)">(\d+)</strong>', page.text)
    return {name: int(number) for name, number in found}


def confirm_import(
    client: httpx.Client, import_url: str, token: str, headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"{import_url}/confirm", data={"token": token}, headers=headers)
