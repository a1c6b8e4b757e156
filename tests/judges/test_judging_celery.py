"""Judging through a real Celery worker (embedded broker on SQLite runs, Redis on PostgreSQL):
adding a judge sends it a run on the `judging` queue, and a sampling job that makes tasks
sends the project's active judges another."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.judges import service as judges
from app.judges.schemas import JudgeCreate
from app.models import Ranking, RankingTask
from app.projects.service import add_prompts
from app.sampling import service as sampling
from tests.conftest import FreshDatabase, wait_until
from tests.factories import make_model_project, make_project, make_task

SIMULATED = {"preference": "length:30", "agreement": 0.9, "seed": 0}


def _judge_form(name: str) -> JudgeCreate:
    return JudgeCreate(
        name=name, backend="simulated", model="simulated", options=SIMULATED, agreement_floor=None
    )


def _ai_rankings(db: FreshDatabase, project_id: int) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Ranking)
                .where(Ranking.project_id == project_id, Ranking.source == "ai")
            )
            or 0
        )


def test_adding_a_judge_sends_a_run_the_judging_worker_takes(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes]
) -> None:
    with app_database.session() as session:
        project = make_project(session)
        for _ in range(3):
            make_task(session, project)
        judges.create_judge(
            session, project_id=project.id, data=_judge_form("queue judge"), created_by_id=None
        )
        session.commit()  # the run is sent after this commit
        project_id = project.id

    wait_until(lambda: _ai_rankings(app_database, project_id) == 3, 60, "the judge's rankings")
    assert worker_process.poll() is None


@pytest.mark.slow
def test_a_sampling_job_sends_the_projects_judges_a_run(
    app_database: FreshDatabase, worker_process: subprocess.Popen[bytes], tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=6, min_open_tasks=0)
        add_prompts(session, project_id=project.id, contents=[f"Question {i}?" for i in range(3)])
        judges.create_judge(
            session, project_id=project.id, data=_judge_form("sampling judge"), created_by_id=None
        )
        session.commit()  # its first run finds no task
        sampling.start_sampling(session, project_id=project.id)
        session.commit()  # the sampling job is sent after this commit
        project_id = project.id

    def tasks() -> int:
        with app_database.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(RankingTask)
                    .where(RankingTask.project_id == project_id)
                )
                or 0
            )

    wait_until(lambda: tasks() == 3, 120, "the sampling job's tasks")
    wait_until(lambda: _ai_rankings(app_database, project_id) == 3, 60, "the judge's rankings")
    assert worker_process.poll() is None
