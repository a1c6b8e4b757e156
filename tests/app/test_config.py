"""Settings: the embedded default needs no configuration; the secret key is made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings


def test_no_configuration_means_sqlite_and_filesystem_broker_under_rankloop_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DATA_DIR", "DATABASE_URL", "BROKER_URL", "ARTIFACT_STORE", "SECRET_KEY"):
        monkeypatch.delenv(f"RANKLOOP_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / "rankloop-data"
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/rankloop-data/rankloop.db"
    assert settings.effective_broker_url == "filesystem://"
    assert settings.effective_artifact_store == str(tmp_path / "rankloop-data" / "artifacts")


def test_environment_selects_postgresql_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKLOOP_DATABASE_URL", "postgresql+psycopg://u@db/rankloop")
    monkeypatch.setenv("RANKLOOP_BROKER_URL", "redis://redis:6379/0")
    settings = Settings()
    assert not settings.is_sqlite
    assert settings.effective_broker_url == "redis://redis:6379/0"


def test_secret_key_is_generated_once_and_kept_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RANKLOOP_SECRET_KEY", raising=False)
    monkeypatch.setenv("RANKLOOP_DATA_DIR", str(tmp_path))
    first = Settings().effective_secret_key()
    second = Settings().effective_secret_key()
    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
