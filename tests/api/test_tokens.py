"""Token management: the admin page (secret shown once, revoke) and `rankloop tokens`."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.models import ApiToken, Role
from rankloop.cli import app as cli
from tests.api.conftest import bearer
from tests.helpers import login_new_user

SECRET_IN_PAGE = re.compile(r'<code class="secret">(rl_[A-Za-z0-9_-]+)</code>')


@pytest.fixture
def root_csrf(client: httpx.Client, db_session: Session) -> str:
    """`client` logged in as an admin; its CSRF token."""
    return login_new_user(client, db_session, "root", Role.admin)


def create_on_page(
    client: httpx.Client, csrf: str, name: str, scopes: list[str], **kwargs: Any
) -> httpx.Response:
    """The token form on /admin/tokens, posted."""
    return client.post(
        "/admin/tokens", data={"name": name, "scopes": scopes, "csrf_token": csrf}, **kwargs
    )


def test_admin_creates_a_token_on_the_page_and_sees_it_once(
    client: httpx.Client, root_csrf: str
) -> None:
    created = create_on_page(client, root_csrf, "cluster", ["read", "read:annotators"])
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    secret = SECRET_IN_PAGE.search(created.text).group(1)  # type: ignore[union-attr]
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    listing = client.get("/admin/tokens").text
    assert secret not in listing
    assert secret[:11] in listing
    assert "read, read:annotators" in listing


def test_admin_revokes_a_token_on_the_page(
    client: httpx.Client, db_session: Session, root_csrf: str
) -> None:
    page = create_on_page(client, root_csrf, "old", ["read"]).text
    secret = SECRET_IN_PAGE.search(page).group(1)  # type: ignore[union-attr]
    token = db_session.scalars(select(ApiToken).where(ApiToken.name == "old")).one()
    revoked = client.post(
        f"/admin/tokens/{token.id}/revoke",
        headers={"X-CSRF-Token": root_csrf, "HX-Request": "true"},
    )
    assert revoked.status_code == 200
    assert "Revoked" in revoked.text
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 401


def test_the_page_refuses_unknown_scopes_and_creates_nothing(
    client: httpx.Client, db_session: Session, root_csrf: str
) -> None:
    response = create_on_page(
        client, root_csrf, "x", ["admin"], headers={"Accept": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "scopes"
    assert db_session.scalars(select(ApiToken)).all() == []


def test_annotators_cannot_open_the_tokens_page(client: httpx.Client, db_session: Session) -> None:
    csrf = login_new_user(client, db_session, "ann")
    assert client.get("/admin/tokens").status_code == 403
    assert create_on_page(client, csrf, "x", ["read"]).status_code == 403


def test_tokens_cli_creates_lists_and_revokes(migrated_engine: Engine) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["tokens", "create", "--name", "cli-token", "--scope", "read", "--scope", "write"]
    )
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("rl_")
    with Session(migrated_engine) as session:
        token = session.scalars(select(ApiToken).where(ApiToken.name == "cli-token")).one()
        assert token.scopes == ["read", "write"]
        assert secret not in token.token_hash
        token_id = token.id
    listed = runner.invoke(cli, ["tokens", "list"])
    assert "cli-token" in listed.output
    assert secret not in listed.output
    revoked = runner.invoke(cli, ["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0, revoked.output
    with Session(migrated_engine) as session:
        token = session.get(ApiToken, token_id)
        assert token is not None
        assert token.revoked_at is not None
        session.delete(token)
        session.commit()


@pytest.mark.parametrize(
    "args", [["--scope", "admin"], ["--scope", "read", "--user", "nobody-here"]]
)
def test_tokens_cli_refuses_bad_input(migrated_engine: Engine, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["tokens", "create", "--name", "bad", *args])
    assert result.exit_code == 1
    assert "Error" in result.output
    with Session(migrated_engine) as session:
        assert session.scalars(select(ApiToken).where(ApiToken.name == "bad")).all() == []
