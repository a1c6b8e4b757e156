"""PostgreSQL connections: an idle pooled connection the server dropped is replaced unnoticed."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from app import db
from tests.conftest import BACKEND, PG_ADMIN_URL

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL connection handling"),
]


def _terminate(pid: int) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_connection_dropped_while_idle_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(PG_ADMIN_URL)
    with engine.connect() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate(first_pid)  # e.g. a database restart while the pool sat idle
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)

    with engine.connect() as conn:
        second_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    assert second_pid != first_pid
    engine.dispose()


def test_only_idle_connections_are_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(PG_ADMIN_URL)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    with engine.connect() as conn:  # a new connection: not pinged
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:  # returned a moment ago: not pinged
        conn.execute(text("SELECT 1"))
    assert pings == []

    monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)
    with engine.connect() as conn:  # "idle": pinged once, then used
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert len(pings) == 1
    engine.dispose()
