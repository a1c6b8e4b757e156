"""Account rules: who may log in, how sessions and CSRF tokens are issued, role changes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.accounts import repository
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, InvalidInput, RateLimited, found
from app.models import LoginAttempt, Role, User, WebSession
from app.security import hash_password, new_token, token_digest, verify_password
from app.tokens import service as tokens

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
    """A demoted admin's API tokens are revoked for good: promoting them again revives none."""
    user = _require_user(session, user_id)
    try:
        new_role = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role {role!r}", details={"field": "role"}) from exc
    if user.is_admin and new_role != Role.admin:
        tokens.revoke_tokens_of(session, user_id=user.id)
    user.role = new_role
    return user


def set_active(session: Session, *, user_id: int, active: bool) -> User:
    """Deactivation ends the user's sessions and revokes their API tokens for good."""
    user = _require_user(session, user_id)
    user.active = active
    if not active:
        repository.delete_user_sessions(session, user.id)
        tokens.revoke_tokens_of(session, user_id=user.id)
    return user


def _require_user(session: Session, user_id: int) -> User:
    return found(repository.get_user(session, user_id), f"user {user_id}")


@dataclass(frozen=True)
class IssuedSession:
    token: str  # the cookie value; only its digest is stored
    web_session: WebSession


SUSPECT_DELAY_SECONDS = 1.0
"""How long a login attempt waits while its account is being guessed at from several
addresses, unless it comes from an address the user already has a session from."""


def _sleep(seconds: float) -> None:  # a seam for tests
    time.sleep(seconds)


def check_login_rate(
    session: Session,
    *,
    username: str,
    client_address: str,
    settings: Settings,
    user: User | None = None,
) -> float:
    """Refuse (429) an address over its limits; else the delay in seconds this attempt waits.

    Failures count per account and address together, and per address: an address that keeps
    failing is shut out, but the account itself is never locked, so nobody can keep its owner
    out by failing on purpose. Once the account has as many failures from all addresses
    together as one address may have (guessing spread out), attempts from addresses its user
    holds no session from wait a little: slowed, never locked."""
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    failed = repository.count_failed_logins(
        session, username=username, client_address=client_address, since=since
    )
    if (
        failed.account_address >= settings.login_limit_per_account
        or failed.address >= settings.login_limit_per_address
    ):
        raise RateLimited(
            "Too many failed logins from your address; wait a few minutes and try again.",
            retry_after=settings.login_window_seconds,
        )
    if failed.account >= settings.login_limit_per_account and not (
        user is not None
        and repository.has_session_from(session, user_id=user.id, client_address=client_address)
    ):
        return SUSPECT_DELAY_SECONDS
    return 0.0


def authenticate(
    session: Session, *, username: str, password: str, client_address: str, settings: Settings
) -> tuple[User | None, str]:
    """The user, or None and the reason. A failure is recorded (not raised) so it commits."""
    username, client_address = username.strip()[:64], client_address[:64]
    user = repository.get_user_by_username(session, username)
    delay = check_login_rate(
        session, username=username, client_address=client_address, settings=settings, user=user
    )
    if delay:
        _sleep(delay)
    # A model judge's users row (app/judges) never logs in, whatever its hash.
    if user is None or not verify_password(user.password_hash, password) or user.kind != "human":
        session.add(LoginAttempt(username=username, client_address=client_address))
        return None, "Invalid username or password"
    if not user.active:
        return None, "This account is deactivated; ask an admin"
    repository.forget_failed_logins(session, username=username, client_address=client_address)
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
