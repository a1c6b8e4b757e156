"""Login limits: failures count per account and address together and per address; nobody can
lock an account by failing on purpose (issue 18, item 9)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts import service
from app.config import get_settings
from app.models import LoginAttempt, Role, WebSession
from tests.conftest import app_on_session
from tests.factories import PASSWORD, make_user

ClientAt = Callable[[str], httpx.Client]


@pytest.fixture
def client_at(db_session: Session) -> Iterator[ClientAt]:
    """HTTP clients of one app, each calling from its own address."""
    app = app_on_session(db_session)
    opened: list[TestClient] = []

    def make(address: str) -> httpx.Client:
        test_client = TestClient(app, base_url="http://testserver", client=(address, 40000))
        test_client.__enter__()
        test_client.get("/login")
        opened.append(test_client)
        return test_client

    yield make
    for test_client in opened:
        test_client.__exit__(None, None, None)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays login attempts waited (recorded, not slept)."""
    waited: list[float] = []
    monkeypatch.setattr(service, "_sleep", waited.append)
    return waited


def _post_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": client.cookies.get("rankloop_csrf"),
        },
        follow_redirects=False,
    )


def test_an_attacker_failing_50_times_cannot_keep_the_admin_out(
    client_at: ClientAt, db_session: Session, delays: list[float]
) -> None:
    make_user(db_session, username="root", role=Role.admin)
    attacker, admin = client_at("203.0.113.7"), client_at("198.51.100.2")

    statuses = [_post_login(attacker, "root", f"guess-{i:03d}").status_code for i in range(50)]

    limit = get_settings().login_limit_per_account
    assert statuses[:limit] == [401] * limit
    assert set(statuses[limit:]) == {429}  # the attacker's address is shut out for this account
    blocked = _post_login(attacker, "root", PASSWORD)
    assert blocked.status_code == 429  # even with the right password, from that address
    assert int(blocked.headers["Retry-After"]) > 0

    response = _post_login(admin, "root", PASSWORD)
    assert response.status_code == 303, response.text
    assert "Welcome, root" in admin.get("/").text
    assert all(delay <= service.SUSPECT_DELAY_SECONDS for delay in delays)  # a delay, no lock


def test_a_known_good_address_logs_in_without_delay_while_the_account_is_attacked(
    client_at: ClientAt, db_session: Session, delays: list[float]
) -> None:
    make_user(db_session, username="root", role=Role.admin)
    office = client_at("198.51.100.2")
    assert _post_login(office, "root", PASSWORD).status_code == 303  # a session from here
    limit = get_settings().login_limit_per_account
    # Guessing spread over many addresses: each stays under its own limits.
    for n in range(limit + 5):
        bot = client_at(f"192.0.2.{n + 1}")
        assert _post_login(bot, "root", "wrong-guess").status_code == 401
    delays.clear()

    assert _post_login(client_at("198.51.100.2"), "root", PASSWORD).status_code == 303
    assert delays == []  # the address the admin holds a session from is not slowed

    assert _post_login(client_at("198.51.100.99"), "root", PASSWORD).status_code == 303
    assert delays == [service.SUSPECT_DELAY_SECONDS]  # a new address waits, then gets in

    assert _post_login(client_at("192.0.2.250"), "root", "another-guess").status_code == 401
    assert delays[-1] == service.SUSPECT_DELAY_SECONDS  # the guessers are slowed


def test_one_address_is_limited_across_many_usernames(
    client_at: ClientAt, db_session: Session, delays: list[float]
) -> None:
    make_user(db_session, username="victim")
    limit = get_settings().login_limit_per_address
    sprayer = client_at("203.0.113.50")
    for n in range(limit):
        assert _post_login(sprayer, f"user{n}", "password1").status_code == 401

    assert _post_login(sprayer, "someone-new", "password1").status_code == 429
    assert _post_login(sprayer, "victim", PASSWORD).status_code == 429
    # Another address is not affected, and the victim's account is not locked.
    assert _post_login(client_at("198.51.100.3"), "victim", PASSWORD).status_code == 303


def test_a_successful_login_clears_that_addresses_earlier_typos(
    client_at: ClientAt, db_session: Session, delays: list[float]
) -> None:
    make_user(db_session, username="typist")
    home = client_at("198.51.100.4")
    limit = get_settings().login_limit_per_account
    for _ in range(limit - 1):
        assert _post_login(home, "typist", "fat-fingers").status_code == 401
    assert _post_login(home, "typist", PASSWORD).status_code == 303
    remaining = db_session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.username == "typist", LoginAttempt.client_address == "198.51.100.4")
    )
    assert remaining == 0
    later = client_at("198.51.100.4")
    for _ in range(limit - 1):  # a whole new allowance, not one more typo
        assert _post_login(later, "typist", "fat-fingers").status_code == 401
    assert _post_login(later, "typist", PASSWORD).status_code == 303
    assert db_session.scalar(select(func.count()).select_from(WebSession)) == 2
