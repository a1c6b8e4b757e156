"""Apply Alembic migrations from code (`rankloop db upgrade`, tests, the demo)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def wait_for_database(url: str, timeout: float, interval: float = 1.0) -> None:
    """Return once the database accepts a connection; retry for `timeout` seconds, then raise
    TimeoutError. A PostgreSQL container on its first start refuses TCP connections while its
    setup server runs, and a migration that runs then would fail."""
    import time

    from sqlalchemy.exc import OperationalError

    from app.db import make_engine

    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect():
                    return
            except OperationalError as exc:
                if time.monotonic() + interval > deadline:
                    reason = str(exc.orig or exc).strip().splitlines()[0]
                    raise TimeoutError(
                        f"the database refused connections for {timeout:g} s: {reason}"
                    ) from None
                time.sleep(interval)
    finally:
        engine.dispose()


def upgrade(revision: str = "head", database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(revision: str, database_url: str | None = None) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from app.config import get_settings
    from app.db import make_engine

    engine = make_engine(database_url or get_settings().effective_database_url)
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return rev
