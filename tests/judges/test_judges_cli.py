"""`rankloop judges ...`: add with the admin form's checks, list, pause, resume, run here."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.db import session_scope
from app.models import Judge, Ranking
from rankloop.cli import app
from tests.factories import make_project, make_task

pytestmark = pytest.mark.usefixtures("app_database")


def _one_line(output: str) -> str:
    return " ".join(output.split())


def _project(tasks: int) -> int:
    with session_scope() as session:
        project = make_project(session)
        for _ in range(tasks):
            make_task(session, project)
        return project.id


def _judge(judge_id: int) -> Judge:
    with session_scope(readonly=True) as session:
        judge = session.get(Judge, judge_id)
        assert judge is not None
        session.expunge(judge)
        return judge


SIMULATED = [
    "--backend",
    "simulated",
    "--model",
    "simulated",
    "--option",
    "preference=length:30",
    "--option",
    "agreement=0.8",
]


def test_add_list_pause_resume_and_run_a_judge() -> None:
    project_id = _project(tasks=3)
    runner = CliRunner()

    added = runner.invoke(
        app, ["judges", "add", str(project_id), "--name", "cli judge", *SIMULATED]
    )
    assert added.exit_code == 0, added.output
    with session_scope(readonly=True) as session:
        judge_id = session.scalars(select(Judge.id).where(Judge.project_id == project_id)).one()
    assert f"(id {judge_id})" in added.output
    assert _judge(judge_id).options == {"preference": "length:30", "agreement": 0.8}

    paused = runner.invoke(app, ["judges", "pause", str(judge_id), "--reason", "a break"])
    assert paused.exit_code == 0, paused.output
    listed = _one_line(runner.invoke(app, ["judges", "list", str(project_id)]).output)
    assert "cli judge" in listed
    assert "paused (a break)" in listed
    idle = runner.invoke(app, ["judges", "run", str(judge_id)])
    assert "0 rankings" in _one_line(idle.output)
    assert "stopped: paused" in _one_line(idle.output)

    resumed = runner.invoke(app, ["judges", "resume", str(judge_id)])
    assert resumed.exit_code == 0, resumed.output
    ran = _one_line(runner.invoke(app, ["judges", "run", str(judge_id), "--max-tasks", "2"]).output)
    assert "2 rankings" in ran
    assert "rankings/s" in ran
    assert "stopped: max tasks" in ran
    with session_scope(readonly=True) as session:
        sources = session.scalars(
            select(Ranking.source).where(Ranking.project_id == project_id)
        ).all()
    assert sources == ["ai", "ai"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "gpt"], "--backend"),
        (["--backend", "openai", "--model", "m"], "needs a base_url"),
        (
            [
                "--backend",
                "openai",
                "--model",
                "m",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "sk-abcdefghijklmnopqrstuvwxyz123456",
            ],
            "not the key",
        ),
        (["--backend", "simulated", "--model", "s", "--share", "0"], "--share"),
    ],
)
def test_add_refuses_bad_settings_and_creates_nothing(args: list[str], message: str) -> None:
    project_id = _project(tasks=0)
    if "--model" not in args:
        args = [*args, "--model", "m"]

    result = CliRunner().invoke(app, ["judges", "add", str(project_id), "--name", "bad", *args])

    assert result.exit_code == 1
    assert message in _one_line(result.output)
    assert "sk-abcdefghijklmnopqrstuvwxyz123456" not in result.output
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Judge).where(Judge.project_id == project_id)).all() == []


def test_commands_on_a_missing_judge_or_project_fail_with_one_line() -> None:
    runner = CliRunner()
    for args in (["pause", "999999"], ["resume", "999999"], ["run", "999999"]):
        result = runner.invoke(app, ["judges", *args])
        assert result.exit_code == 1, (args, result.output)
        assert "Error:" in result.output
    missing = runner.invoke(app, ["judges", "list", "no such project"])
    assert missing.exit_code == 1
    assert "No project 'no such project'" in missing.output
