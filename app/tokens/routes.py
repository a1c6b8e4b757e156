"""Admin page for API tokens: list, create (the secret is shown once), revoke.

A browser page with the usual session + CSRF checks; the tokens it makes are for /api/v1, which
in turn never accepts the browser session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser, SessionDep
from app.ids import IdPath
from app.templating import render
from app.tokens import service

router = APIRouter(prefix="/admin/tokens", include_in_schema=False)


def _page(
    request: Request, session: SessionDep, *, notice: str = "", secret: str | None = None
) -> Response:
    ctx = {
        "tokens": service.list_tokens(session),
        "scopes": service.SCOPES,
        "notice": notice,
        "secret": secret,
    }
    response = render(request, "admin_tokens.html", ctx, block="tokens")
    response.headers["Cache-Control"] = "no-store"  # the page may show a new secret
    return response


@router.get("", response_class=HTMLResponse)
def tokens_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return _page(request, session)


@router.post("", response_class=HTMLResponse)
def create_token(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    name: Annotated[str, Form(max_length=200)],
    scopes: Annotated[list[str], Form(max_length=20)] = [],  # noqa: B006 (FastAPI copies it)
) -> Response:
    issued = service.create_token(session, name=name, scopes=scopes, created_by_id=admin.id)
    notice = f"Created token {issued.token.name!r} ({', '.join(issued.token.scopes)})."
    return _page(request, session, notice=notice, secret=issued.secret)


@router.post("/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(
    request: Request, session: SessionDep, admin: AdminUser, token_id: IdPath
) -> Response:
    token = service.revoke_token(session, token_id=token_id)
    return _page(request, session, notice=f"Revoked {token.name!r}.")
