"""Logged-in clients for the admin page tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import security
from app.models import Role, User
from tests.factories import make_user
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
