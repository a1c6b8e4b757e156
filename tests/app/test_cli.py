"""The CLI: every command has --help; `users create` writes a user with a hashed password."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.config import get_settings
from app.models import Project, Prompt, Role, User
from rankloop.cli import app

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
    ["projects"],
    ["projects", "create"],
    ["prompts"],
    ["prompts", "import"],
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
        [sys.executable, "-m", "rankloop.cli", "sample", "--project", "demo"],
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


@pytest.fixture
def drop_projects(migrated_engine: Engine) -> Iterator[list[str]]:
    """Names of projects a test creates, deleted (with their prompts) afterwards."""
    names: list[str] = []
    yield names
    with Session(migrated_engine) as session:
        session.execute(delete(Project).where(Project.name.in_(names)))
        session.commit()


def _project(engine: Engine, name: str) -> Project | None:
    with Session(engine) as session:
        return session.scalars(select(Project).where(Project.name == name)).first()


def test_projects_create_takes_the_form_defaults_and_prints_the_id(
    migrated_engine: Engine, drop_projects: list[str]
) -> None:
    drop_projects.append("cli project")
    argv = ["projects", "create", "--name", "cli project", "-K", "6"]
    result = CliRunner().invoke(
        app, [*argv, "--set", "temperature=0.7", "--set", "min-open-tasks=0"]
    )

    assert result.exit_code == 0, result.output
    project = _project(migrated_engine, "cli project")
    assert project is not None
    assert f"(id {project.id})" in result.output
    assert project.base_model == get_settings().default_base_model
    assert (project.samples_per_prompt, project.temperature, project.min_open_tasks) == (6, 0.7, 0)
    assert (project.annotations_per_task, project.lease_minutes, project.top_p) == (1, 15, 0.95)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["-K", "12"],
            "Invalid value for --samples-per-prompt: Samples per prompt must be between",
        ),
        (["--annotations-per-task", "0"], "Invalid value for --annotations-per-task"),
        (["--set", "temperature=hot"], "Invalid value for --set temperature: Temperature must be"),
        (["--set", "colour=red"], "unknown project setting 'colour'"),
        (["--set", "name=other"], "(it has its own option)"),
        (["--set", "trust_remote_code=maybe"], "Invalid value for --set trust_remote_code"),
        (["--set", "temperature"], "takes NAME=VALUE"),
        (["--base-model", " "], "Invalid value for --base-model: Base model must be"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_projects_create_bad_settings_are_usage_errors_that_create_nothing(
    migrated_engine: Engine, drop_projects: list[str], options: list[str], message: str
) -> None:
    drop_projects.append("cli bad project")
    argv = ["projects", "create", "--name", "cli bad project", *options]
    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())
    assert _project(migrated_engine, "cli bad project") is None


def test_projects_create_refuses_a_taken_name(
    migrated_engine: Engine, drop_projects: list[str]
) -> None:
    drop_projects.append("cli twice")
    runner = CliRunner()
    assert runner.invoke(app, ["projects", "create", "--name", "cli twice"]).exit_code == 0

    again = runner.invoke(app, ["projects", "create", "--name", "cli twice"])

    assert again.exit_code == 1
    assert "already exists" in again.output


def test_projects_set_changes_the_efficiency_settings_as_the_form_does(
    migrated_engine: Engine, drop_projects: list[str]
) -> None:
    drop_projects.append("cli settings")
    runner = CliRunner()
    assert runner.invoke(app, ["projects", "create", "--name", "cli settings"]).exit_code == 0
    project = _project(migrated_engine, "cli settings")
    assert project is not None
    assert (project.selection, project.reliability_weighting, project.gold_rate) == (
        "uniform",
        True,
        0.1,
    )

    result = runner.invoke(
        app,
        [
            "projects", "set", "cli settings", "--set", "selection=active",
            "--set", "uniform_share=0.3", "--set", "reliability_weighting=off",
            "--set", "gold-rate=0.05",
        ],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    project = _project(migrated_engine, "cli settings")
    assert project is not None
    assert (project.selection, project.uniform_share) == ("active", 0.3)
    assert (project.reliability_weighting, project.gold_rate) == (False, 0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "selection=clever"], "Task selection must be one of: uniform, active"),
        (["--set", "gold_rate=0.9"], "Gold task rate must be between 0.0 and 0.5"),
        (["--set", "selection=active", "--set", "uniform_share=2"], "Uniform share must be"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_projects_set_refuses_bad_values_and_changes_nothing(
    migrated_engine: Engine, drop_projects: list[str], options: list[str], message: str
) -> None:
    drop_projects.append("cli set bad")
    runner = CliRunner()
    assert runner.invoke(app, ["projects", "create", "--name", "cli set bad"]).exit_code == 0

    result = runner.invoke(app, ["projects", "set", "cli set bad", *options])

    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())
    project = _project(migrated_engine, "cli set bad")
    assert project is not None
    assert (project.selection, project.uniform_share, project.gold_rate) == ("uniform", 0.2, 0.1)


def test_prompts_import_counts_imported_duplicates_and_errors(
    migrated_engine: Engine, drop_projects: list[str], tmp_path: Path
) -> None:
    drop_projects.append("cli import")
    runner = CliRunner()
    assert runner.invoke(app, ["projects", "create", "--name", "cli import"]).exit_code == 0
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(
        '{"prompt": "Why is the sky blue?"}\n'
        '{"prompt": "Why is the   sky blue?"}\n'
        "not json [red]\n"
        '{"prompt": "Name a [bold]colour[/bold]."}\n'
    )
    csv = tmp_path / "alpaca.csv"
    csv.write_text("instruction,input\nName a fruit,red\nWhy is the sky blue?,\n")
    argv = ["prompts", "import", "--project", "cli import"]

    first = runner.invoke(app, [*argv, str(jsonl)])
    again = runner.invoke(app, [*argv, str(jsonl)])
    other = runner.invoke(app, [*argv, str(csv)])

    assert first.exit_code == 0, first.output
    out = [" ".join(r.output.split()) for r in (first, again, other)]  # rich wraps long lines
    assert (
        "imported 2; skipped 0 already in the project and 1 repeated in the file; 1 bad record left"
        in out[0]
    )
    assert "line 3: invalid JSON" in first.output
    assert "imported 0; skipped 3 already in the project and 0 repeated in the file" in out[1]
    assert "(alpaca): imported 1; skipped 1 already in the project and 0 repeated" in out[2]
    project = _project(migrated_engine, "cli import")
    assert project is not None
    with Session(migrated_engine) as session:
        count = session.scalar(select(func.count()).where(Prompt.project_id == project.id))
    assert count == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--project", "no such project"], "No project 'no such project'"),
        (["--project", "cli import 2", "--format", "excel"], "Unknown format 'excel'"),
    ],
)
def test_prompts_import_refuses_unknown_project_and_format(
    migrated_engine: Engine,
    drop_projects: list[str],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    drop_projects.append("cli import 2")
    assert CliRunner().invoke(app, ["projects", "create", "--name", "cli import 2"]).exit_code == 0
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hello?"}\n')

    result = CliRunner().invoke(app, ["prompts", "import", *argv, str(prompts)])

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_demo_simulate_defaults_are_the_loops() -> None:
    from rankloop.simulation import LoopSettings

    command = typer.main.get_command(app).commands["demo"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    loop = LoopSettings()
    assert defaults["rounds"] == loop.rounds
    assert defaults["preference"] == loop.preference
    assert defaults["noise"] == loop.noise
    assert defaults["annotators"] == loop.annotators
    assert defaults["seed"] == loop.seed


def test_demo_simulate_refuses_an_unknown_preference_before_starting() -> None:
    result = CliRunner().invoke(app, ["demo", "--simulate", "--preference", "politeness"])

    assert result.exit_code == 1
    assert "Unknown preference 'politeness'" in result.output
