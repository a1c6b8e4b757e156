"""Queries for API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiToken, User


def get_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def get_by_digest(session: Session, token_hash: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def list_tokens(session: Session) -> list[tuple[ApiToken, str | None]]:
    """Every token, newest first, with its creator's username (None for CLI-made tokens)."""
    rows = session.execute(
        select(ApiToken, User.username)
        .outerjoin(User, User.id == ApiToken.created_by_id)
        .order_by(ApiToken.id.desc())
    ).all()
    return [(token, username) for token, username in rows]
