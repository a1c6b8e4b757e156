"""Bearer-token authentication, scope checks and the per-token rate limit for /api/v1.

Only the Authorization header is read: a browser's session cookie never authorises the API, so
a page on another site cannot make a logged-in admin's browser call it (no CSRF hole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.ratelimit import Limiter, make_limiter
from app.config import Settings
from app.deps import SessionDep, SettingsDep
from app.errors import Forbidden, Unauthorized
from app.tokens import service as tokens

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token made on /admin/tokens or with `rankloop tokens create`: "
    "`Authorization: Bearer rl_…`. Scopes: `read` (every GET), `write` (imports, rounds, "
    "rollback; brings `read` with it), `read:annotators` (usernames in exports; brings "
    "`read`). A token works until revoked; demoting or deactivating the admin who made it "
    "revokes it for good.",
)


class MissingToken(Unauthorized, code="missing_token"): ...


class InvalidToken(Unauthorized, code="invalid_token"): ...


class MissingScope(Forbidden, code="missing_scope"): ...


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: a snapshot of the token (safe to use after the session closed)."""

    token_id: int
    name: str
    scopes: frozenset[str]
    user_id: int | None

    @property
    def sees_annotators(self) -> bool:
        return "read:annotators" in self.scopes


def get_limiter(request: Request, settings: Settings) -> Limiter:
    """One limiter per app: in Redis when the broker is Redis (shared by every web process),
    else in this process (so each test app starts with a clean window)."""
    limiter = getattr(request.app.state, "api_rate_limiter", None)
    if limiter is None:
        limiter = request.app.state.api_rate_limiter = make_limiter(
            settings.effective_broker_url, settings.effective_database_url
        )
    return limiter


def api_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiPrincipal:
    if credentials is None:
        raise MissingToken("Send an API token: Authorization: Bearer <token>")
    token = tokens.authenticate(session, credentials.credentials)
    if token is None:
        raise InvalidToken("The API token is unknown, revoked, or its creator is no admin")
    limit = settings.api_rate_limit_per_minute
    remaining = get_limiter(request, settings).hit(token.id, limit=limit)
    request.state.rate_limit = (limit, remaining)
    scopes = tokens.effective_scopes(token.scopes)
    return ApiPrincipal(token.id, token.name, scopes, token.created_by_id)


def require_scope(scope: str) -> Callable[[ApiPrincipal], ApiPrincipal]:
    def check(principal: Annotated[ApiPrincipal, Depends(api_principal)]) -> ApiPrincipal:
        if scope not in principal.scopes:
            raise MissingScope(
                f"This token lacks the {scope!r} scope", details={"required_scope": scope}
            )
        return principal

    return check


ReadToken = Annotated[ApiPrincipal, Depends(require_scope("read"))]
WriteToken = Annotated[ApiPrincipal, Depends(require_scope("write"))]
