"""Engine, sessions and the declarative Base.

Transaction rule (STYLE.md): the request or the task is the unit of work. `session_scope`
commits on success and rolls back on error; services only flush. On SQLite (written by the web
process and the worker at once) we use WAL, a busy timeout, and BEGIN IMMEDIATE for writing
transactions so two writers queue instead of failing on a lock upgrade. Within one process,
writers also queue on a lock of ours: SQLite's busy handler polls with sleeps, which under
dozens of concurrent requests turns into second-long waits; a lock hands over at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use app.db.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


SQLITE_LOCK_TIMEOUT_SECONDS = 30.0


def _configure_sqlite(engine: Engine) -> None:
    # A plain Lock (not an RLock): a request may begin in one threadpool thread and commit in
    # another.
    writer = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite's is broken)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("readonly", False)
        if readonly:
            conn.exec_driver_sql("BEGIN")
            return
        if not writer.acquire(timeout=SQLITE_LOCK_TIMEOUT_SECONDS):
            raise TimeoutError("the database is busy: no write slot within 30 s")
        conn.info["holds_writer_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Any) -> None:
        if conn.info.pop("holds_writer_lock", False):
            writer.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        # A session closed without commit or rollback: the pool's reset rolled it back.
        if record.info.pop("holds_writer_lock", False):
            writer.release()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,  # FastAPI runs sync routes on up to 40 threads
            max_overflow=30,
        )
        _configure_sqlite(engine)
        return engine
    # Up to 30 connections a process, as before, but 20 kept open: a connection beyond the
    # pool's size is closed when returned, and under a few dozen concurrent requests (FastAPI
    # runs sync routes on 40 threads) a pool of 10 opened and closed one for most requests.
    engine = create_engine(url, pool_size=20, max_overflow=10)
    _ping_idle_connections(engine)
    return engine


IDLE_PING_SECONDS = 10.0
"""A pooled connection idle longer than this is pinged before use."""


def _ping_idle_connections(engine: Engine) -> None:
    """`pool_pre_ping`, but only for connections that sat idle: a database restart or an idle
    timeout drops those, while a connection returned a moment ago is alive. Pinging every
    checkout cost a round trip per request, about a tenth of an annotation request. A failed
    ping makes the pool discard the connection and open a fresh one."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("connection dropped while idle") from exc


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().effective_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's transaction commits (e.g. send a Celery job carrying ids)."""
    session.info.setdefault("after_commit", []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop("after_commit", [])
    for fn in callbacks:
        fn()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


@contextmanager
def session_scope(*, readonly: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    factory = get_sessionmaker()
    session = factory()
    if readonly:
        session.connection(execution_options={"readonly": True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
