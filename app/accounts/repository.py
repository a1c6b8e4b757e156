"""Queries for users, sessions and login attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from app.models import LoginAttempt, User, WebSession


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session, *, search: str = "", limit: int | None = None) -> list[User]:
    """People by username (a model judge's users row is listed with its judge, not here);
    `search` matches part of the username or display name (any case)."""
    query = select(User).where(User.kind == "human").order_by(User.username)
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
    return int(
        session.scalar(select(func.count()).select_from(User).where(User.kind == "human")) or 0
    )


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


@dataclass(frozen=True)
class FailedLogins:
    """Failed logins in the window, counted three ways."""

    account: int
    """For this username, from every address."""
    account_address: int
    """For this username from this address."""
    address: int
    """From this address, for every username."""


def count_failed_logins(
    session: Session, *, username: str, client_address: str, since: datetime
) -> FailedLogins:
    same_account = LoginAttempt.username == username
    same_address = LoginAttempt.client_address == client_address
    row = session.execute(
        select(
            func.count().filter(same_account),
            func.count().filter(and_(same_account, same_address)),
            func.count().filter(same_address),
        ).where(LoginAttempt.attempted_at >= since, or_(same_account, same_address))
    ).one()
    return FailedLogins(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def forget_failed_logins(session: Session, *, username: str, client_address: str) -> None:
    """After a successful login: this address's earlier typos for the account no longer count."""
    session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.username == username, LoginAttempt.client_address == client_address
        )
    )


def has_session_from(session: Session, *, user_id: int, client_address: str) -> bool:
    """Whether the user holds a browser session opened from this address (it logged in there)."""
    found = session.scalar(
        select(WebSession.id)
        .where(WebSession.user_id == user_id, WebSession.client_address == client_address)
        .limit(1)
    )
    return found is not None


def prune_login_attempts(session: Session, *, before: datetime) -> None:
    session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < before))
