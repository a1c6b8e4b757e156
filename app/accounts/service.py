"""Account rules: who may log in, how sessions and CSRF tokens are issued, role changes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.accounts import repository
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound, RateLimited
from app.models import LoginAttempt, Role, User, WebSession
from app.security import hash_password, new_token, token_digest, verify_password

MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    display_name: str = "",
) -> User:
    username = username.strip()
    if not _USERNAME.match(username):
        raise InvalidInput(
            "Username must be 2–64 characters: letters, digits, and _ . @ -",
            details={"field": "username"},
        )
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role {role!r}", details={"field": "role"}) from exc
    _check_password(password)
    if repository.get_user_by_username(session, username) is not None:
        raise Conflict(f"User {username!r} already exists")
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        role=role,
        password_hash=hash_password(password),
    )
    session.add(user)
    session.flush()
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters",
            details={"field": "password"},
        )


def set_password(session: Session, *, user_id: int, password: str) -> User:
    user = _require_user(session, user_id)
    _check_password(password)
    user.password_hash = hash_password(password)
    repository.delete_user_sessions(session, user.id)  # a reset logs out everywhere
    return user


def set_role(session: Session, *, user_id: int, role: Role | str) -> User:
    user = _require_user(session, user_id)
    try:
        user.role = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role {role!r}", details={"field": "role"}) from exc
    return user


def set_active(session: Session, *, user_id: int, active: bool) -> User:
    user = _require_user(session, user_id)
    user.active = active
    if not active:
        repository.delete_user_sessions(session, user.id)
    return user


def _require_user(session: Session, user_id: int) -> User:
    user = repository.get_user(session, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}")
    return user


@dataclass(frozen=True)
class IssuedSession:
    token: str  # the cookie value; only its digest is stored
    web_session: WebSession


def check_login_rate(
    session: Session, *, username: str, client_address: str, settings: Settings
) -> None:
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    per_account, per_address = repository.count_failed_logins(
        session, username=username, client_address=client_address, since=since
    )
    if (
        per_account >= settings.login_limit_per_account
        or per_address >= settings.login_limit_per_address
    ):
        raise RateLimited(
            "Too many failed logins; wait a few minutes and try again.",
            retry_after=settings.login_window_seconds,
        )


def authenticate(
    session: Session, *, username: str, password: str, client_address: str, settings: Settings
) -> tuple[User | None, str]:
    """The user, or None and the reason. A failure is recorded (not raised) so it commits."""
    username = username.strip()
    check_login_rate(session, username=username, client_address=client_address, settings=settings)
    user = repository.get_user_by_username(session, username)
    if user is None or not verify_password(user.password_hash, password):
        session.add(LoginAttempt(username=username[:64], client_address=client_address[:64]))
        return None, "Invalid username or password"
    if not user.active:
        return None, "This account is deactivated; ask an admin"
    return user, ""


def start_session(
    session: Session, *, user: User, client_address: str | None, settings: Settings
) -> IssuedSession:
    token = new_token()
    web_session = WebSession(
        token_hash=token_digest(token),
        user_id=user.id,
        csrf_token=new_token(24),
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
        client_address=(client_address or "")[:64] or None,
    )
    session.add(web_session)
    session.flush()
    return IssuedSession(token=token, web_session=web_session)


def resolve_session(session: Session, token: str | None) -> tuple[WebSession, User] | None:
    """The live session and its active user for a cookie value, else None."""
    if not token:
        return None
    found = repository.get_web_session_with_user(session, token_digest(token))
    if found is None:
        return None
    web_session, user = found
    if web_session.expires_at <= utcnow() or not user.active:
        return None
    return web_session, user


def end_session(session: Session, token: str | None) -> None:
    if not token:
        return
    web_session = repository.get_web_session(session, token_digest(token))
    if web_session is not None:
        session.delete(web_session)
