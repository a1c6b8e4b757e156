"""Logging in and out: hashed passwords, CSRF on every form, roles, deactivation, rate limits."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Role, WebSession
from tests.conftest import BACKEND
from tests.factories import PASSWORD, make_user
from tests.helpers import csrf_token, login, post_login


def test_login_sets_an_httponly_samesite_session_cookie(
    client: httpx.Client, db_session: Session
) -> None:
    user = make_user(db_session, username="ann")
    response = post_login(client, "ann", PASSWORD, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "rankloop_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    stored = db_session.scalars(select(WebSession).where(WebSession.user_id == user.id)).one()
    assert stored.token_hash != client.cookies.get("rankloop_session")  # only a digest is kept
    assert "Welcome, ann" in client.get("/").text


def test_wrong_password_is_refused_and_creates_no_session(
    client: httpx.Client, db_session: Session
) -> None:
    make_user(db_session, username="bob")
    response = post_login(client, "bob", "wrong password")
    assert response.status_code == 401
    assert "Invalid username or password" in response.text
    assert db_session.scalar(select(func.count()).select_from(WebSession)) == 0


def test_a_login_name_with_a_nul_character_is_refused_without_a_500(
    client: httpx.Client, db_session: Session
) -> None:
    make_user(db_session, username="dora")
    response = post_login(client, "dora\x00", PASSWORD)
    # PostgreSQL cannot even compare text with NUL: the input is refused before the check.
    assert response.status_code == (422 if BACKEND == "postgresql" else 401)
    assert db_session.scalar(select(func.count()).select_from(WebSession)) == 0


def test_login_without_csrf_token_is_forbidden(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, username="carl")
    client.get("/login")
    response = client.post("/login", data={"username": "carl", "password": PASSWORD})
    assert response.status_code == 403
    assert db_session.scalar(select(func.count()).select_from(WebSession)) == 0


def test_logout_requires_the_session_csrf_token(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, username="dora")
    token = login(client, "dora")
    assert client.post("/logout", follow_redirects=False).status_code == 403
    response = client.post("/logout", headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_deactivated_user_cannot_log_in(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, username="eve", active=False)
    response = post_login(client, "eve", PASSWORD)
    assert response.status_code == 401
    assert "deactivated" in response.text


def test_failed_logins_are_rate_limited_per_account(
    client: httpx.Client, db_session: Session
) -> None:
    make_user(db_session, username="fay")
    client.get("/login")
    csrf = client.cookies.get("rankloop_csrf")
    for _ in range(10):
        bad = client.post(
            "/login", data={"username": "fay", "password": "nope-nope", "csrf_token": csrf}
        )
        assert bad.status_code == 401
    blocked = client.post(
        "/login", data={"username": "fay", "password": PASSWORD, "csrf_token": csrf}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_pages_redirect_to_login_when_logged_out(client: httpx.Client) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_templates_escape_user_text(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, username="gil", display_name="<script>alert(1)</script>")
    login(client, "gil")
    page = client.get("/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert csrf_token(client)


def test_admin_role_is_recorded(db_session: Session) -> None:
    admin = make_user(db_session, role=Role.admin)
    assert admin.is_admin
    assert not make_user(db_session).is_admin
