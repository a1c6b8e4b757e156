"""Dependencies that make route signatures read like sentences (SessionDep, CurrentUser, ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from anyio import CancelScope, CapacityLimiter, to_thread
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import AppError, Forbidden
from app.models import Role, User
from app.security import tokens_equal

SESSION_COOKIE = "rankloop_session"
PRELOGIN_CSRF_COOKIE = "rankloop_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request is the unit of work: commit on success, roll back on error.

    Async, unlike the routes, to save a threadpool hop per request: a writing request's session
    does no I/O until its first query (in the route's thread), so it opens here; a read opens
    its connection at once, in the threadpool. The commit or rollback runs in a thread outside
    the pool's limit, as FastAPI does for sync generators, so a request holding a connection
    can always finish.
    """
    readonly = request.method in SAFE_METHODS
    scope = session_scope(readonly=readonly)
    session = await run_in_threadpool(scope.__enter__) if readonly else scope.__enter__()
    try:
        yield session
    except BaseException as exc:
        with CancelScope(shield=True):
            await to_thread.run_sync(
                scope.__exit__, type(exc), exc, exc.__traceback__, limiter=CapacityLimiter(1)
            )
        raise
    with CancelScope(shield=True):
        await to_thread.run_sync(scope.__exit__, None, None, None, limiter=CapacityLimiter(1))


SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class LoginRequired(AppError):
    """Raised for pages; the error handler turns it into a redirect to /login."""

    status_code = 401
    code = "login_required"


async def _submitted_csrf(request: Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if "form" in content_type:
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


@dataclass(frozen=True)
class UserView:
    """The logged-in user as templates see it (`current_user`).

    A snapshot, because an error page renders after the request's transaction rolled back and
    the session closed: reading the ORM User then raises DetachedInstanceError (a 500).
    """

    id: int
    username: str
    display_name: str
    role: Role
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(user.id, user.username, user.display_name, user.role, user.is_admin)


async def _csrf_of_unsafe_request(request: Request) -> str:
    return "" if request.method in SAFE_METHODS else await _submitted_csrf(request)


def current_user(
    request: Request,
    session: SessionDep,
    submitted: Annotated[str, Depends(_csrf_of_unsafe_request)],
) -> User:
    """Sync on purpose: FastAPI runs it in the threadpool. Database calls in an async
    dependency would run on the event loop and stall every request while one waits for a
    pooled connection (a deadlock once more requests are in flight than connections)."""
    resolved = accounts.resolve_session(session, request.cookies.get(SESSION_COOKIE))
    if resolved is None:
        raise LoginRequired("Please log in")
    web_session, user = resolved
    if request.method not in SAFE_METHODS:
        if not submitted or not tokens_equal(submitted, web_session.csrf_token):
            raise Forbidden("Missing or invalid CSRF token; reload the page and try again")
    request.state.user = UserView.of(user)
    request.state.web_session = web_session
    request.state.csrf_token = web_session.csrf_token
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("Admins only")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


async def prelogin_csrf(request: Request) -> None:
    """Double-submit check for the login form, which has no session yet."""
    cookie = request.cookies.get(PRELOGIN_CSRF_COOKIE, "")
    submitted = await _submitted_csrf(request)
    if not cookie or not submitted or not tokens_equal(cookie, submitted):
        raise Forbidden("Missing or invalid CSRF token; reload the page and try again")


PreloginCsrf = Depends(prelogin_csrf)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
