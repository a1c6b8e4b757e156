"""Test helpers shared by HTTP tests: logging in the way a browser does (with CSRF tokens)."""

from __future__ import annotations

import re

import httpx

from tests.factories import PASSWORD

_CSRF_IN_PAGE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    """Log in through the form and return the session's CSRF token (for X-CSRF-Token)."""
    client.get("/login")
    prelogin = client.cookies.get("rankloop_csrf")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": prelogin},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_token(client)


def csrf_token(client: httpx.Client) -> str:
    page = client.get("/")
    match = _CSRF_IN_PAGE.search(page.text)
    assert match, "no CSRF token on the start page"
    return match.group(1)
