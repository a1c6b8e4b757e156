"""Login and logout pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.accounts import service
from app.deps import (
    PRELOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ClientAddress,
    CurrentUser,
    PreloginCsrf,
    SessionDep,
    SettingsDep,
)
from app.security import new_token
from app.templating import render

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep, error: str = "") -> Response:
    token = request.cookies.get(PRELOGIN_CSRF_COOKIE) or new_token(24)
    response = render(request, "login.html", {"csrf_token": token, "error": error})
    response.set_cookie(
        PRELOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=settings.cookie_secure
    )
    return response


@router.post("/login", dependencies=[PreloginCsrf])
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    address: ClientAddress,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    user, error = service.authenticate(
        session, username=username, password=password, client_address=address, settings=settings
    )
    if user is None:
        ctx = {"csrf_token": request.cookies.get(PRELOGIN_CSRF_COOKIE, ""), "error": error}
        return render(request, "login.html", ctx, status_code=401)
    issued = service.start_session(
        session, user=user, client_address=address, settings=settings
    )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_hours * 3600,
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    service.end_session(session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: CurrentUser) -> Response:
    return render(request, "home.html", {"user": user})
