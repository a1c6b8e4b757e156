"""The CLI: every command has --help; `users create` writes a user with a hashed password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import app
from app.models import Role, User

COMMANDS = [
    [],
    ["db"],
    ["db", "upgrade"],
    ["db", "downgrade"],
    ["db", "current"],
    ["users"],
    ["users", "create"],
    ["users", "list"],
    ["serve"],
    ["worker"],
    ["demo"],
    ["models"],
    ["models", "make-tiny"],
    ["sample"],
    ["train-reward-model"],
    ["round"],
    ["round", "start"],
    ["round", "status"],
    ["round", "cancel"],
    ["simulate"],
    ["tokens"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
    ["policies"],
    ["policies", "export"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rankloop")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_users_create_stores_a_hashed_password(migrated_engine: Engine) -> None:
    result = CliRunner().invoke(
        app, ["users", "create", "--username", "cli-admin", "--role", "admin", "--generate"]
    )
    assert result.exit_code == 0, result.output
    printed_password = result.output.split("shown once):")[1].split()[0]
    with Session(migrated_engine) as session:
        user = session.scalars(select(User).where(User.username == "cli-admin")).one()
        assert user.role == Role.admin
        assert printed_password not in user.password_hash
        assert user.password_hash.startswith("$argon2")
        session.delete(user)
        session.commit()


def test_users_create_refuses_unknown_role_and_duplicate(migrated_engine: Engine) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        app,
        ["users", "create", "--username", "x1", "--role", "boss", "--password", "long enough pw"],
    )
    assert bad.exit_code == 1
    assert "Unknown role" in bad.output
    ok = runner.invoke(app, ["users", "create", "--username", "twice", "--password", "long enough"])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(
        app, ["users", "create", "--username", "twice", "--password", "long enough"]
    )
    assert again.exit_code == 1
    assert "already exists" in again.output
    with Session(migrated_engine) as session:
        assert session.scalars(select(User).where(User.username == "x1")).first() is None
        session.delete(session.scalars(select(User).where(User.username == "twice")).one())
        session.commit()


def test_worker_refuses_unknown_queue() -> None:
    result = CliRunner().invoke(app, ["worker", "--queues", "gpu"])
    assert result.exit_code == 1
    assert "Unknown queue" in result.output


@pytest.mark.parametrize(
    "argv",
    [
        ["round", "status", str(2**31)],
        ["round", "cancel", "0"],
        ["tokens", "revoke", str(2**63)],
        ["policies", "export", str(2**31), "out"],
        ["sample", "--project", "p", "--seed", str(2**31)],
        ["sample", "--project", "p", "--prompts", "0"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_numbers_the_database_cannot_hold_are_usage_errors(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output


def test_an_unknown_migration_revision_is_a_clear_error(migrated_engine: Engine) -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--revision", "no-such-revision"])
    assert result.exit_code == 1
    assert "Can't locate revision" in result.output
    assert "Traceback" not in result.output


def test_a_database_without_tables_asks_for_db_upgrade(tmp_path: Path) -> None:
    env = {**os.environ, "RANKLOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "sample", "--project", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "run `rankloop db upgrade` first" in " ".join(done.stdout.split())
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["type=dpo"], "--type"),
        (["seed=1", "seed.x=2"], "is a value, not a group"),
        (["ppo.steps=2", "ppo=1"], "is a group of settings"),
    ],
)
def test_round_settings_that_cannot_mean_anything_are_refused(
    settings: list[str], message: str
) -> None:
    argv = ["round", "start", "--project", "p"]
    for setting in settings:
        argv += ["--set", setting]

    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
