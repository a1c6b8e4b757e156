"""Settings a production deploy relies on: secrets that are refused when guessable, a database
password that needs no URL quoting, migrations that wait for a database still starting."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app import migrate
from app.config import Settings
from app.db import make_engine
from rankloop.cli import app as cli_app
from tests.conftest import PG_ADMIN_URL, reset_app_caches

PG = make_url(PG_ADMIN_URL)


def _pg_reachable() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((PG.host or "127.0.0.1", PG.port or 5432)) == 0


needs_pg = pytest.mark.skipif(not _pg_reachable(), reason="no PostgreSQL here (.ci/run starts it)")


@pytest.mark.parametrize(
    "key",
    [
        "change-me",
        "change-me-to-a-long-random-string",  # what .env.example used to ship
        "CHANGEME-CHANGEME-CHANGEME-CHANGEME",
        "replace-me-with-something-long-and-random",
        "short-but-random-3f9a",
        "a" * 40,
        "abababababababababababababababababab",
    ],
)
def test_a_placeholder_short_or_repetitive_secret_key_is_refused(key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(secret_key=key)
    assert key not in str(refused.value), "the refused secret is echoed into the logs"
    assert "RANKLOOP_SECRET_KEY" in str(refused.value)


def test_the_secret_key_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKLOOP_SECRET_KEY", "change-me")
    reset_app_caches()
    try:
        result = CliRunner().invoke(cli_app, ["db", "current"])
    finally:
        monkeypatch.undo()
        reset_app_caches()
    assert result.exit_code != 0
    assert "RANKLOOP_SECRET_KEY" in str(result.exception)


def test_a_random_secret_key_is_kept_and_an_empty_one_means_generated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    key = secrets.token_hex(32)
    assert Settings(secret_key=key).effective_secret_key() == key
    monkeypatch.setenv("RANKLOOP_DATA_DIR", str(tmp_path))
    generated = Settings(secret_key="").effective_secret_key()
    assert len(generated) >= 32


def test_a_placeholder_database_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="RANKLOOP_DATABASE_PASSWORD"):
        Settings(
            database_url="postgresql+psycopg://rankloop@db/rankloop", database_password="change-me"
        )


PASSWORD = "p@ss%40w/rd:x?#y z"  # every character a URL gives a meaning to


def test_the_database_password_is_quoted_into_the_url() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://rankloop@postgres:5432/rankloop",
        database_password=PASSWORD,
    )
    url = make_url(settings.effective_database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "rankloop", PASSWORD, "postgres", 5432, "rankloop"
    )
    assert Settings(database_password="").database_password is None
    assert Settings(forwarded_allow_ips=" ").forwarded_allow_ips is None


@needs_pg
def test_a_password_with_url_characters_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the test PostgreSQL: the URL built with the password still names its host, port
    and database (a hand-written one would take `p` as the password and `ss%40...` as host)."""
    role = f"rankloop_pw_{secrets.token_hex(3)}"
    admin = make_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        quoted = PASSWORD.replace("%", "%%")  # the driver's placeholder syntax; no ' in it
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'")
        conn.commit()
    try:
        settings = Settings(
            database_url=PG.set(username=role, password=None).render_as_string(),
            database_password=PASSWORD,
        )
        engine = make_engine(settings.effective_database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == role
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE {role}"))
            conn.commit()
        admin.dispose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def late_postgres() -> Iterator[tuple[int, threading.Event]]:
    """A port that stays closed, as PostgreSQL's is while its first-start setup runs, then
    (once the event is set) forwards to the test PostgreSQL."""
    port, opened, stop = _closed_port(), threading.Event(), threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                s.close()

    def serve() -> None:
        opened.wait()
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((PG.host or "127.0.0.1", PG.port or 5432))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, opened
    stop.set()
    opened.set()
    thread.join(timeout=5)


@needs_pg
def test_migrations_wait_for_a_database_that_opens_late(
    late_postgres: tuple[int, threading.Event],
) -> None:
    port, opened = late_postgres
    url = PG.set(port=port).render_as_string(hide_password=False)
    with pytest.raises(TimeoutError, match="refused connections for 1 s"):
        migrate.wait_for_database(url, timeout=1, interval=0.2)
    threading.Timer(1.5, opened.set).start()
    started = time.monotonic()
    migrate.wait_for_database(url, timeout=30, interval=0.2)
    assert 1.0 < time.monotonic() - started < 20


def test_db_upgrade_gives_up_after_its_wait_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"postgresql+psycopg://rankloop@127.0.0.1:{_closed_port()}/rankloop"
    monkeypatch.setenv("RANKLOOP_DATABASE_URL", url)
    reset_app_caches()
    try:
        started = time.monotonic()
        result = CliRunner().invoke(cli_app, ["db", "upgrade", "--wait", "1"])
    finally:
        monkeypatch.undo()
        reset_app_caches()
    assert result.exit_code == 1, result.output
    assert "refused connections" in result.output
    assert time.monotonic() - started < 15
