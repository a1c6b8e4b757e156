"""The round page tests' admin (`client` logged in the way a browser does) and project."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Project, Role
from tests.factories import make_project, make_user
from tests.helpers import login


@pytest.fixture
def admin_csrf(client: httpx.Client, db_session: Session) -> str:
    """Logs `client` in as an admin: the session's CSRF token."""
    make_user(db_session, role=Role.admin, username="round-admin")
    return login(client, "round-admin")


@pytest.fixture
def project(admin_csrf: str, db_session: Session) -> Project:
    """A new project, with `client` logged in as an admin (admin_csrf)."""
    return make_project(db_session)


def section(page: str, start: str, end: str) -> str:
    """The part of `page` between the first `start` and the first `end` after it."""
    return page.split(start, 1)[1].split(end, 1)[0]
