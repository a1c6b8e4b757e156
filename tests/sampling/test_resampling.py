"""Sampling jobs on the tiny model: a model that repeats itself gets no task showing one text
twice (it draws again, then skips the prompt and says so), and a second job on prompts that
all have a task makes further tasks of new samples."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import RankingTask, Sample, SamplingJob, TaskSample
from app.models.sample import text_key
from app.projects.service import add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase
from tests.factories import make_model_project
from tests.sampling.conftest import start_job
from worker.jobs.sampling import run_sampling_job


def _project(db: FreshDatabase, model: Path, n_prompts: int, **settings: object) -> int:
    with db.session() as session:
        project = make_model_project(session, model, **settings)
        contents = [f"Resample {project.id}.{i}: say something?" for i in range(n_prompts)]
        add_prompts(session, project_id=project.id, contents=contents)
        session.commit()
        return project.id


def _task_samples(session: Session, project_id: int) -> dict[int, list[Sample]]:
    rows = session.execute(
        select(RankingTask.id, Sample)
        .join(TaskSample, TaskSample.task_id == RankingTask.id)
        .join(Sample, Sample.id == TaskSample.sample_id)
        .where(RankingTask.project_id == project_id)
    ).all()
    out: dict[int, list[Sample]] = {}
    for task_id, sample in rows:
        out.setdefault(task_id, []).append(sample)
    return out


def test_a_model_that_repeats_itself_draws_again_then_skips_the_prompt(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    # top_p this small keeps one token: every draw is the same text
    project_id = _project(app_database, tiny_model_path, 2, max_new_tokens=2, top_p=0.01)
    job_id = start_job(app_database, project_id)

    assert run_sampling_job(job_id, batch_size=8) == 0

    with app_database.session() as session:
        (view,) = service.recent_jobs(session, project_id=project_id)
        assert (view.state, view.prompts_skipped) == ("done", 2)
        drawn = session.scalars(select(Sample).where(Sample.project_id == project_id)).all()
        texts: dict[int, set[str]] = {}
        for sample in drawn:
            texts.setdefault(sample.prompt_id, set()).add(text_key(sample.text))
        assert [len(t) for t in texts.values()] == [1, 1]  # one text per prompt
        assert len(drawn) > 2 * 4  # more than K per prompt: it tried again
        assert not _task_samples(session, project_id)


def test_tasks_hold_distinct_texts_and_a_second_job_adds_tasks_of_new_samples(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    # two tokens at temperature 1: repeats happen, and are drawn again
    project_id = _project(app_database, tiny_model_path, 4, max_new_tokens=2, temperature=1.0)
    run_sampling_job(start_job(app_database, project_id), batch_size=8)
    with app_database.session() as session:
        first = _task_samples(session, project_id)
        tasked = set(
            session.scalars(
                select(RankingTask.prompt_id).where(RankingTask.project_id == project_id)
            )
        )

    second_job = start_job(app_database, project_id)
    run_sampling_job(second_job, batch_size=8)

    with app_database.session() as session:
        tasks = _task_samples(session, project_id)
        second = {t: s for t, s in tasks.items() if t not in first}
        for samples in tasks.values():
            assert len({text_key(s.text) for s in samples}) == len(samples) == 4
        job = session.get_one(SamplingJob, second_job)
        assert tasked <= set(job.prompt_ids)  # it sampled prompts that had a task already
        assert second
        shown_before = {s.id for samples in first.values() for s in samples}
        assert not shown_before & {s.id for samples in second.values() for s in samples}
