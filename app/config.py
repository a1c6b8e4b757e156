"""One Settings object for the web app, the CLI and the workers (env prefix RANKLOOP_).

With no configuration everything lives under ./rankloop-data/ on SQLite with a broker that
needs no server, so `rankloop demo` runs on a laptop.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # hide_input_in_errors: a refused secret is not echoed into the logs.
    model_config = SettingsConfigDict(
        env_prefix="RANKLOOP_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(
        default=Path("rankloop-data"),
        description="Local state: SQLite database, embedded broker, secret key, default artifacts.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Default: SQLite file in the data directory.",
    )
    database_password: str | None = Field(
        default=None,
        description="Password put into the database URL, quoted for it (so @, %, / and : need "
        "no escaping): the URL then names no password. Default: the URL's own.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker, e.g. redis://host:6379/0. "
        "Default: kombu's filesystem transport in the data directory (no server).",
    )
    artifact_store: str | None = Field(
        default=None,
        description="Where checkpoints, adapters and exports go: a local path, a shared volume "
        "or an fsspec URL such as s3://bucket/rankloop. Default: <data_dir>/artifacts.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Server secret for keyed hashes (e.g. stable annotator pseudonyms in "
        "exports): at least 32 characters, no placeholder. Default: generated once and kept in "
        "<data_dir>/secret_key.",
    )
    cookie_secure: bool = Field(
        default=False, description="Mark session cookies Secure (set when served over HTTPS)."
    )
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For/-Proto headers `rankloop serve` trusts ('*': any). "
        "Default: uvicorn's FORWARDED_ALLOW_IPS, else 127.0.0.1.",
    )
    serve_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where the web app is reached (`rankloop simulate` logs in there).",
    )
    session_hours: int = Field(default=12, description="Lifetime of a browser session.")
    login_limit_per_account: int = Field(
        default=10,
        description="Failed logins allowed per account from one client address per window "
        "(the account itself is never locked).",
    )
    login_limit_per_address: int = Field(
        default=50, description="Failed logins allowed per client address per window."
    )
    login_window_seconds: int = Field(default=300, description="Login rate-limit window.")
    api_rate_limit_per_minute: int = Field(
        default=600, description="Requests per minute allowed per API token."
    )
    default_base_model: str = Field(
        default="tiny",
        description="Base model for new projects: a hub id, a local directory, or 'tiny' for "
        "the offline model RankLoop builds itself under <data_dir>/models/tiny.",
    )
    hf_token: str | None = Field(
        default=None, description="Hugging Face token for gated models (also read from HF_TOKEN)."
    )
    heartbeat_timeout_seconds: int = Field(
        default=600,
        description="A running stage or sampling job whose heartbeat is older than this is "
        "failed by the workers' reaper.",
    )
    ratings_debounce_seconds: float = Field(
        default=5.0, description="Delay before ratings are recomputed after new rankings."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads torch uses per worker process and in `rankloop sample`. "
        "Default: the cores the process may use, divided by the worker processes sharing them.",
    )
    train_procs: int = Field(
        default=1,
        ge=1,
        description="Processes a training stage runs as (torchrun, one per GPU; gloo on CPU). "
        "1: in the worker's own process.",
    )
    train_fsdp: bool = Field(
        default=False,
        description="With train_procs > 1, shard the model over the processes (FSDP2) instead "
        "of a copy per process (DDP): for bases that do not fit one device.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("hf_token", "database_password", "forwarded_allow_ips")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """`NAME=` in .env or `${NAME:-}` in compose means unset, not an empty credential."""
        return (value or "").strip() or None

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None:
            check_secret("RANKLOOP_SECRET_KEY", value, min_length=MIN_SECRET_KEY_LENGTH)
        return value

    @field_validator("database_password")
    @classmethod
    def _no_placeholder_password(cls, value: str | None) -> str | None:
        if value is not None:
            check_secret("RANKLOOP_DATABASE_PASSWORD", value, min_length=1)
        return value

    @property
    def effective_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.data_dir / 'rankloop.db'}"
        if self.database_password is None:
            return url
        from sqlalchemy.engine import make_url

        with_password = make_url(url).set(password=self.database_password)
        return with_password.render_as_string(hide_password=False)  # quotes @ % / : and the like

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def effective_artifact_store(self) -> str:
        return self.artifact_store or str(self.data_dir / "artifacts")

    @property
    def tiny_model_dir(self) -> Path:
        return self.data_dir / "models" / "tiny"

    def effective_secret_key(self) -> str:
        """Return the configured key, or one generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key

    def effective_hf_token(self) -> str | None:
        """The Hugging Face token, or None: an empty or blank value is no token (an empty one
        would be sent as `Authorization: Bearer `, which HTTP clients refuse)."""
        return self.hf_token or (os.environ.get("HF_TOKEN") or "").strip() or None


MIN_SECRET_KEY_LENGTH = 32
# Values from examples and templates: a secret anyone can read makes keyed hashes reversible.
_PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "your-secret",
                 "secret-key", "placeholder", "example", "xxxxxxxx")


def check_secret(name: str, value: str, *, min_length: int) -> None:
    """Refuse a placeholder, a short value, or one of a few repeated characters."""
    folded = value.lower()
    if any(word in folded for word in _PLACEHOLDERS) or folded in {"secret", "password"}:
        raise ValueError(f"{name} is a placeholder: set a random value")
    if len(value) < min_length:
        raise ValueError(
            f"{name} is {len(value)} characters; use at least {min_length} random ones "
            "(e.g. `openssl rand -hex 32`)"
        )
    if min_length >= 16 and len(set(value)) < 8:
        raise ValueError(f"{name} repeats a few characters: set a random value")


@lru_cache
def get_settings() -> Settings:
    return Settings()
