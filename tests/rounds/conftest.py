"""The round page tests' admin: `client` logged in the way a browser does."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Role
from tests.factories import make_user
from tests.helpers import login


@pytest.fixture
def admin_csrf(client: httpx.Client, db_session: Session) -> str:
    """Logs `client` in as an admin: the session's CSRF token."""
    make_user(db_session, role=Role.admin, username="round-admin")
    return login(client, "round-admin")
