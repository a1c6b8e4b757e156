"""Token rules: which scopes exist, how a token is issued, checked, revoked and marked used.

A token acts with its creator's admin authority: demoting or deactivating that admin revokes
their tokens for good, so promoting them again brings none back (tokens made with the CLI
without --user have no creator and work until revoked).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, found
from app.models import ApiToken, User
from app.security import new_token, token_digest
from app.tokens import repository

SCOPES: dict[str, str] = {
    "read": "Read projects, rounds, policy versions, ratings; export data; download policies.",
    "write": "Everything read allows, plus: import prompts, samples and demonstrations; "
    "start and cancel rounds; roll back policy versions.",
    "read:annotators": "Everything read allows, with annotator usernames in exports "
    "(otherwise stable pseudonyms).",
}
IMPLIED_SCOPES: dict[str, str] = {"write": "read", "read:annotators": "read"}
"""A scope and the one it brings: a token that may change or name things may also read."""
TOKEN_PREFIX = "rl_"
PREFIX_CHARS = 11  # "rl_" + 8 characters: enough to tell tokens apart in a list
MAX_NAME = 128
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""last_used_at is written at most this often per token, so a busy token is not a hot row."""


@dataclass(frozen=True)
class IssuedToken:
    secret: str
    """The bearer value; shown once, only its digest is stored."""
    token: ApiToken


def clean_scopes(scopes: list[str]) -> list[str]:
    """Known scopes, deduplicated, in the canonical order; unknown or none is a 422.
    write and read:annotators bring read with them (IMPLIED_SCOPES)."""
    wanted = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(wanted - SCOPES.keys())
    if unknown:
        raise InvalidInput(
            f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}",
            details=[{"field": "scopes", "message": f"unknown scope {s!r}"} for s in unknown],
        )
    if not wanted:
        raise InvalidInput(
            "Give the token at least one scope",
            details=[{"field": "scopes", "message": "at least one scope is required"}],
        )
    return [s for s in SCOPES if s in effective_scopes(wanted)]


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes a token holds with those they imply (older tokens stored `write` alone)."""
    held = set(scopes)
    return frozenset(held | {IMPLIED_SCOPES[s] for s in held if s in IMPLIED_SCOPES})


def create_token(
    session: Session, *, name: str, scopes: list[str], created_by_id: int | None = None
) -> IssuedToken:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(
            f"A token needs a name of 1 to {MAX_NAME} characters",
            details=[{"field": "name", "message": f"1 to {MAX_NAME} characters"}],
        )
    clean = clean_scopes(scopes)
    secret = TOKEN_PREFIX + new_token(32)
    token = ApiToken(
        name=name,
        token_hash=token_digest(secret),
        prefix=secret[:PREFIX_CHARS],
        scopes=clean,
        created_by_id=created_by_id,
    )
    session.add(token)
    session.flush()
    return IssuedToken(secret=secret, token=token)


def list_tokens(session: Session) -> list[tuple[ApiToken, str | None]]:
    return repository.list_tokens(session)


def revoke_token(session: Session, *, token_id: int) -> ApiToken:
    """Revoking twice keeps the first revocation time."""
    token = found(repository.get_token(session, token_id), f"API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token


def revoke_tokens_of(session: Session, *, user_id: int) -> int:
    """The user lost admin (demoted or deactivated): revoke their tokens for good."""
    return repository.revoke_created_by(session, user_id=user_id, at=utcnow())


def authenticate(session: Session, secret: str) -> ApiToken | None:
    """The live token for a bearer value, else None (unknown, revoked, or creator not an
    active admin). Marks it used (at most once a minute)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = repository.get_by_digest(session, token_digest(secret))
    if token is None or token.revoked_at is not None:
        return None
    if token.created_by_id is not None:
        creator = session.get(User, token.created_by_id)
        if creator is None or not creator.active or not creator.is_admin:
            return None
    _touch(session, token, utcnow())
    return token


def _touch(session: Session, token: ApiToken, now: datetime) -> None:
    """Best effort: on SQLite a read transaction may fail to upgrade to a write under
    contention; the request must not fail for a timestamp, so the savepoint is dropped."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    try:
        with session.begin_nested():
            token.last_used_at = now
            session.flush()
    except OperationalError:
        session.expire(token, ["last_used_at"])
