"""Test helpers shared by HTTP tests: logging in the way a browser does (with CSRF tokens), and
what the browser tests share (Chromium, logging in on the page)."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Role
from tests.factories import PASSWORD, make_user

_CSRF_IN_PAGE = re.compile(r'"X-CSRF-Token": "([^"]+)"')
# What a quiet console never shows: warnings, library progress and tracebacks go to the log file.
CONSOLE_NOISE = (
    "No hostname was supplied",
    "SecurityWarning",
    "superuser",
    "FutureWarning",
    "Loading weights",
    "Writing model shards",
    "Traceback",
)


def post_login(
    client: httpx.Client, username: str, password: str = PASSWORD, **kwargs: Any
) -> httpx.Response:
    """Open the login page and post the form with its pre-login CSRF token."""
    client.get("/login")
    prelogin = client.cookies.get("rankloop_csrf")
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": prelogin},
        **kwargs,
    )


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    """Log in through the form and return the session's CSRF token (for X-CSRF-Token)."""
    response = post_login(client, username, password, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_token(client)


def login_new_user(
    client: httpx.Client, session: Session, username: str, role: Role = Role.annotator
) -> str:
    """Make a user (committed, so a failing request keeps it), log in as them, return the CSRF
    token."""
    make_user(session, username=username, role=role)
    session.commit()
    return login(client, username)


def csrf_token(client: httpx.Client) -> str:
    page = client.get("/")
    match = _CSRF_IN_PAGE.search(page.text)
    assert match, "no CSRF token on the start page"
    return match.group(1)


# Browser tests

CHROMIUM = shutil.which("chromium")
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="chromium is not installed (apt-get install chromium); required in CI",
    ),
]


def log_in_on_page(page: Any, server_url: str, username: str) -> None:
    """Log in through the login form in a Playwright page and wait for the start page."""
    page.goto(server_url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server_url + "/")
