"""Test wiring: one backend per run (RANKLOOP_TEST_BACKEND=sqlite|postgresql), real services.

Service tests roll back per test (`db_session`). Tests that need other processes (a live
server, a Celery worker, a browser) take `fresh_database`: a new database per module whose
rows are committed. Tests using any database fixture are marked `db`; the PostgreSQL run of
.ci/run selects only those (`-m db`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from fastapi import FastAPI

BACKEND = os.environ.get("RANKLOOP_TEST_BACKEND", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "RANKLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RANKLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
DB_FIXTURES = {
    "db_session",
    "migrated_engine",
    "fresh_database",
    "client",
    "live_server",
    "app_database",
}
_TMP = Path(tempfile.mkdtemp(prefix="rankloop-tests-"))
_created_pg: list[str] = []


def _new_database_url(label: str) -> str:
    if BACKEND == "postgresql":
        name = f"rankloop_test_{label}_{os.getpid()}_{secrets.token_hex(3)}"
        _created_pg.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    if BACKEND != "sqlite":
        raise pytest.UsageError(f"RANKLOOP_TEST_BACKEND must be sqlite or postgresql: {BACKEND}")
    return f"sqlite:///{_TMP / f'{label}-{secrets.token_hex(3)}.db'}"


def create_database(url: str) -> None:
    if url.startswith("postgresql"):
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"'))
        admin.dispose()


def _drop_created_pg_databases() -> None:
    if not _created_pg:
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in _created_pg:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pytest_configure(config: pytest.Config) -> None:
    os.environ["RANKLOOP_DATA_DIR"] = str(_TMP / "data")
    os.environ["RANKLOOP_DATABASE_URL"] = _new_database_url("main")
    os.environ["RANKLOOP_SECRET_KEY"] = "tests-only-8f3a1c9e5b7d2f4a6c0e8b1d3f5a7c9e"
    if BACKEND == "postgresql":
        os.environ["RANKLOOP_BROKER_URL"] = REDIS_URL
    else:
        os.environ.pop("RANKLOOP_BROKER_URL", None)
    reset_app_caches()


def pytest_unconfigure(config: pytest.Config) -> None:
    _drop_created_pg_databases()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def reset_app_caches() -> None:
    """Forget cached settings and engines after the environment changed."""
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


@pytest.fixture(scope="session")
def migrated_engine() -> Iterator[Engine]:
    """The session's main database, migrated to head once."""
    from app import migrate
    from app.db import get_engine

    url = os.environ["RANKLOOP_DATABASE_URL"]
    create_database(url)
    migrate.upgrade("head", database_url=url)
    yield get_engine()
    get_engine().dispose()


@pytest.fixture
def db_session(migrated_engine: Engine) -> Iterator[Session]:
    """A session whose commits are savepoints inside a transaction rolled back after the test."""
    conn = migrated_engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()


def app_on_session(db_session: Session) -> FastAPI:
    """The app whose requests all run on `db_session` (each committed, or rolled back on error)."""
    from app.deps import get_db
    from app.main import create_app

    app = create_app()

    def _test_db() -> Iterator[Session]:
        try:
            yield db_session
            db_session.commit()
        except BaseException:
            db_session.rollback()
            raise

    app.dependency_overrides[get_db] = _test_db
    return app


@pytest.fixture
def client(db_session: Session) -> Iterator[httpx.Client]:
    """In-process HTTP client whose requests run inside the test's rolled-back transaction."""
    from fastapi.testclient import TestClient

    with TestClient(app_on_session(db_session), base_url="http://testserver") as test_client:
        yield test_client


@dataclass
class FreshDatabase:
    url: str
    engine: Engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[FreshDatabase]:
    """A new, migrated database for this module; rows are committed and seen by subprocesses."""
    from app import migrate
    from app.db import make_engine

    url = _new_database_url("mod")
    create_database(url)
    migrate.upgrade("head", database_url=url)
    engine = make_engine(url)
    yield FreshDatabase(url=url, engine=engine)
    engine.dispose()


@pytest.fixture
def sessions(fresh_database: FreshDatabase) -> Iterator[tuple[Session, Session]]:
    """Two open transactions on one PostgreSQL database, for row-lock tests; a lock wait
    fails after 5 s instead of hanging the suite."""
    from sqlalchemy import text

    first, second = fresh_database.session(), fresh_database.session()
    for session in (first, second):
        session.execute(text("SET lock_timeout = '5s'"))
    yield first, second
    first.close()
    second.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]


def start_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def live_server(fresh_database: FreshDatabase, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """`rankloop serve` in a subprocess on the module's fresh database."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("server-data")
    env = {
        **os.environ,
        "RANKLOOP_DATABASE_URL": fresh_database.url,
        "RANKLOOP_DATA_DIR": str(data_dir),
        "RANKLOOP_LOGIN_LIMIT_PER_ADDRESS": "100000",
        "RANKLOOP_LOGIN_LIMIT_PER_ACCOUNT": "1000",
    }
    log = data_dir / "server.log"
    proc = start_process(
        [sys.executable, "-m", "rankloop.cli", "serve", "--port", str(port)], env, log
    )
    url = f"http://127.0.0.1:{port}"

    def _up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(_up, 60, "the server")
    yield LiveServer(url=url, process=proc, env=env)
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 and tokenizer built locally (briefly trained), saved with save_pretrained."""
    from worker.training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), steps=30, seed=0)


@pytest.fixture(scope="module")
def app_database(fresh_database: FreshDatabase) -> Iterator[FreshDatabase]:
    """Point the app's own engine (session_scope, workers' plain functions) at a fresh database."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RANKLOOP_DATABASE_URL", fresh_database.url)
        reset_app_caches()
        yield fresh_database
    reset_app_caches()


def purge_queues(env: dict[str, str]) -> None:
    """Drop messages left by earlier tests (Redis keeps them between test modules)."""
    code = (
        "from app.jobs import QUEUES\n"
        "from worker.celery_app import celery_app\n"
        "with celery_app.connection_for_write() as conn:\n"
        "    ch = conn.channel()\n"
        "    for q in QUEUES:\n"
        "        try:\n"
        "            ch.queue_purge(q)\n"
        "        except Exception:\n"
        "            pass\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


@pytest.fixture(scope="module")
def worker_process(app_database: FreshDatabase, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real `rankloop worker` (every queue) on the module's database and the run's broker."""
    env = {**os.environ, "RANKLOOP_DATABASE_URL": app_database.url}
    purge_queues(env)
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_process(
        [sys.executable, "-m", "rankloop.cli", "worker", "--queues", "sampling,training,judging"],
        env,
        log,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def flagged(db_session: Session):  # type: ignore[no-untyped-def]
    """A project whose current version humans rated worse than its parent (a Flagged)."""
    from tests.ratings.conftest import flagged_project

    return flagged_project(db_session)
