"""Queries for API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
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


def revoke_created_by(session: Session, *, user_id: int, at: datetime) -> int:
    """Revoke every live token the user made; how many were live."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.created_by_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
