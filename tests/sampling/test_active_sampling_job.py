"""A sampling job on the tiny model under selection="active": after a reward model (with its
ensemble) exists, tasks are chosen from a pool of candidates and say why; without one, the
actively chosen prompts fall back to uniform tasks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.artifacts import get_store
from app.models import Project, RewardModelVersion, Sample, SamplingJob
from app.projects.service import add_prompts
from app.sampling.selection import UNCERTAINTY, UNIFORM
from tests.conftest import FreshDatabase
from tests.factories import (
    job_tasks,
    make_model_project,
    make_ranking,
    make_task,
    make_user,
    task_sample_ids,
    task_shows,
)
from tests.sampling.conftest import start_job
from worker.jobs.sampling import run_sampling_job
from worker.training.reward_ensemble import ENSEMBLE_FILE

K = 4
NEW_PROMPTS = ["What is a good breakfast?", "Why is the sky blue?", "Name a river.", "Hi!"]


def _project(db: FreshDatabase, model: Path, *, ranked: int) -> int:
    """An active project on the tiny model: `ranked` prompts with a strict ranking each, then
    the prompts the job samples (uniform share 0.25: one of four drawn uniformly)."""
    with db.session() as session:
        project = make_model_project(session, model, samples_per_prompt=K, max_new_tokens=8)
        project.selection, project.uniform_share = "active", 0.25
        annotator = make_user(session)
        for i in range(ranked):
            texts = [f"great {i}", f"fine {i}", f"poor {i}", f"bad {i}"]
            task = make_task(session, project, texts=texts)
            make_ranking(session, task, annotator, [[s] for s in task_sample_ids(session, task)])
        add_prompts(session, project_id=project.id, contents=NEW_PROMPTS)
        session.commit()
        return project.id


@pytest.mark.slow
def test_an_active_job_after_a_reward_model_stores_tasks_with_their_reasons(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    from worker.jobs.reward_model import train_project_reward_model

    project_id = _project(app_database, tiny_model_path, ranked=8)
    run = train_project_reward_model(project_id, {"epochs": 1, "max_length": 64})
    assert (Path(get_store().local_dir(run.artifact_uri)) / ENSEMBLE_FILE).exists()

    job_id = start_job(app_database, project_id)
    created = run_sampling_job(job_id, prompts_per_chunk=2, batch_size=8)

    assert created == len(NEW_PROMPTS)
    with app_database.session() as session:
        tasks = job_tasks(session, job_id)
        assert Counter(t.selection_reason for t in tasks) == {UNIFORM: 1, UNCERTAINTY: 3}
        for task in tasks:
            shown = task_shows(session, task.id)
            assert len({s.text for s in shown}) == K
            assert {s.prompt_id for s in shown} == {task.prompt_id}
            drawn = session.scalar(
                select(func.count()).where(
                    Sample.prompt_id == task.prompt_id, Sample.sampling_job_id == job_id
                )
            )
            if task.selection_reason == UNCERTAINTY:  # chosen from a pool of 2K candidates
                assert drawn is not None
                assert drawn >= 2 * K
        # Prompt-level selection: 3 extra candidate prompts (the ranked ones, next by fewest
        # tasks) got pools too; the 3 candidates passed over left the job's prompts.
        pooled = session.scalar(
            select(func.count(func.distinct(Sample.prompt_id))).where(
                Sample.sampling_job_id == job_id
            )
        )
        assert pooled == len(NEW_PROMPTS) + 3
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert sorted(job.prompt_ids) == sorted(t.prompt_id for t in tasks)


def test_without_a_reward_model_active_prompts_get_uniform_tasks(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id = _project(app_database, tiny_model_path, ranked=0)
    with app_database.session() as session:
        assert (
            session.scalar(select(func.count()).where(RewardModelVersion.project_id == project_id))
            == 0
        )
        project = session.get(Project, project_id)
        assert project is not None
        assert project.selection == "active"
    job_id = start_job(app_database, project_id)
    assert run_sampling_job(job_id, prompts_per_chunk=4, batch_size=8) == len(NEW_PROMPTS)
    with app_database.session() as session:
        assert {t.selection_reason for t in job_tasks(session, job_id)} == {UNIFORM}
