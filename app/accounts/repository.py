"""Queries for users, sessions and login attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, delete, func, select
from sqlalchemy.orm import Session

from app.models import LoginAttempt, User, WebSession


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session, *, search: str = "", limit: int | None = None) -> list[User]:
    """By username; `search` matches part of the username or display name (any case)."""
    query = select(User).order_by(User.username)
    if search:
        query = query.where(user_matches(search))
    return list(session.scalars(query.limit(limit)))


def user_matches(search: str) -> ColumnElement[bool]:
    """Part of the username or display name, any case; `%` and `_` match themselves."""
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return func.lower(User.username).like(pattern, escape="\\") | func.lower(
        User.display_name
    ).like(pattern, escape="\\")


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def get_web_session(session: Session, token_hash: str) -> WebSession | None:
    return session.scalar(select(WebSession).where(WebSession.token_hash == token_hash))


# Built once: every page and HTMX request resolves its session, and building the statement
# cost more CPU than running it.
_SESSION_WITH_USER = (
    select(WebSession, User)
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.token_hash == bindparam("token_hash"))
)


def get_web_session_with_user(session: Session, token_hash: str) -> tuple[WebSession, User] | None:
    """The session and its user in one round trip."""
    row = session.execute(_SESSION_WITH_USER, {"token_hash": token_hash}).one_or_none()
    return None if row is None else (row[0], row[1])


def delete_user_sessions(session: Session, user_id: int) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))


def count_failed_logins(
    session: Session, *, username: str, client_address: str, since: datetime
) -> tuple[int, int]:
    per_account = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.username == username, LoginAttempt.attempted_at >= since)
    )
    per_address = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.client_address == client_address, LoginAttempt.attempted_at >= since
        )
    )
    return int(per_account or 0), int(per_address or 0)


def prune_login_attempts(session: Session, *, before: datetime) -> None:
    session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < before))
