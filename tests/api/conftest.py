"""Tokens for API tests: each fixture returns a function making a token with given scopes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.models import Role
from app.tokens import service as tokens
from tests.factories import make_user

MakeToken = Callable[..., str]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


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
