"""Sampling on the tiny model: K samples per prompt, tasks created, idempotent, reproducible,
and tasks that mix two versions as the project asks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project, RankingTask, Sample, SamplingJob, TaskSample
from app.projects.service import add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase
from tests.factories import job_tasks, make_current_version, make_model_project, task_shows
from worker.jobs.sampling import run_sampling_job


@pytest.fixture(scope="module")
def project_id(app_database: FreshDatabase, tiny_model_path: Path) -> int:
    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=12)
        add_prompts(
            session,
            project_id=project.id,
            contents=[
                "What is a good breakfast?",
                "Why is the sky blue?",
                [
                    {"role": "user", "content": "Hello!"},
                    {"role": "assistant", "content": "Hi, how can I help?"},
                    {"role": "user", "content": "Tell me about cats."},
                ],
            ],
        )
        session.commit()
        return project.id


def _start(session: Session, project_id: int, **kwargs: object) -> int | None:
    job = service.start_sampling(session, project_id=project_id, enqueue=False, **kwargs)
    session.commit()
    return job.id if job else None


def test_sampling_writes_k_samples_and_a_task_per_prompt(
    app_database: FreshDatabase, project_id: int
) -> None:
    with app_database.session() as session:
        job_id = _start(session, project_id)
    assert job_id is not None
    seen: list[tuple[int, int]] = []
    created = run_sampling_job(
        job_id, progress=lambda d, t: seen.append((d, t)), prompts_per_chunk=2, batch_size=4
    )
    assert created == 3
    assert seen == [(2, 3), (3, 3)]
    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert (job.state.value, job.prompts_done, job.prompts_total) == ("done", 3, 3)
        tasks = session.scalars(
            select(RankingTask).where(RankingTask.project_id == project_id)
        ).all()
        assert len(tasks) == 3
        for task in tasks:
            count = session.scalar(select(func.count()).where(TaskSample.task_id == task.id))
            assert count == 4
        samples = session.scalars(select(Sample).where(Sample.project_id == project_id)).all()
        assert len(samples) == 12
        assert all(s.batch_seed is not None and s.batch_position is not None for s in samples)


def test_a_second_run_adds_nothing(app_database: FreshDatabase, project_id: int) -> None:
    with app_database.session() as session:
        before = session.scalar(select(func.count()).select_from(Sample))
        job_id = session.scalar(select(func.max(SamplingJob.id)))
    assert job_id is not None
    with app_database.session() as session:  # redelivered job: reset to running
        job = session.get(SamplingJob, job_id)
        assert job is not None
        job.state = job.state.__class__.running
        session.commit()
    assert run_sampling_job(job_id) == 0
    with app_database.session() as session:
        assert session.scalar(select(func.count()).select_from(Sample)) == before


def test_a_batch_regenerates_exactly_from_its_recorded_seed(
    app_database: FreshDatabase, project_id: int, tiny_model_path: Path
) -> None:
    from app.models import Prompt
    from worker.training.generation import GenerationSettings, generate_batch
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer

    with app_database.session() as session:
        sample = session.scalars(select(Sample).where(Sample.project_id == project_id)).first()
        assert sample is not None
        batch = session.scalars(
            select(Sample)
            .where(Sample.batch_seed == sample.batch_seed, Sample.project_id == project_id)
            .order_by(Sample.batch_position)
        ).all()
        prompts = [session.get(Prompt, s.prompt_id) for s in batch]
        contents = [p.messages or p.text for p in prompts if p is not None]
        project = session.get(Project, project_id)
        assert project is not None
        settings = GenerationSettings(
            max_new_tokens=project.max_new_tokens,
            temperature=project.temperature,
            top_p=project.top_p,
        )
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = load_causal_lm(str(tiny_model_path), device="cpu")
    ensure_pad_token(tokenizer, model)
    again = generate_batch(model, tokenizer, contents, settings=settings, seed=sample.batch_seed)
    assert [g.text for g in again] == [s.text for s in batch]


def test_tasks_of_a_new_version_mix_in_the_previous_version(
    app_database: FreshDatabase, project_id: int, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        v1, v2 = make_current_version(session, project, base_model=str(tiny_model_path))
        session.commit()
        job_id = _start(session, project_id)
        v1_id, v2_id = v1.id, v2.id
    assert job_id is not None
    assert run_sampling_job(job_id) == 3
    with app_database.session() as session:
        tasks = job_tasks(session, job_id)
        assert len(tasks) == 3
        for task in tasks:
            versions = task_shows(session, task.id, Sample.policy_version_id)
            assert sorted(versions).count(v2_id) == 2  # ⌈4/2⌉ newest
            assert sorted(versions).count(v1_id) == 2  # ⌊4/2⌋ previous, reused
        # the previous version's samples were reused, not generated again
        assert session.scalar(select(func.count()).where(Sample.policy_version_id == v1_id)) == 12


def test_mix_counts_follow_the_share() -> None:
    assert service.mix_counts(9, 0.5, True) == (5, 4)
    assert service.mix_counts(4, 0.5, True) == (2, 2)
    assert service.mix_counts(9, 0.5, False) == (9, 0)
    assert service.mix_counts(5, 1.0, True) == (4, 1)


def test_a_resumed_job_reports_the_prompts_actually_done(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=4)
        add_prompts(session, project_id=project.id, contents=[f"Resume {i}?" for i in range(6)])
        session.commit()
        job_id = _start(session, project.id)
    assert job_id is not None

    def stored() -> tuple[int, int]:
        with app_database.session() as session:
            job = session.get(SamplingJob, job_id)
            assert job is not None
            tasks = session.scalar(
                select(func.count()).where(RankingTask.project_id == job.project_id)
            )
            return job.prompts_done, int(tasks or 0)

    class WorkerDied(Exception):
        pass

    def die_after_two_chunks(done: int, total: int) -> None:
        if done == 4:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        run_sampling_job(job_id, progress=die_after_two_chunks, prompts_per_chunk=2)
    assert stored() == (4, 4)

    seen: list[tuple[int, int]] = []
    run_sampling_job(job_id, progress=lambda d, t: seen.append(stored()), prompts_per_chunk=2)

    assert seen == [(4, 4), (4, 4), (6, 6)]  # the chunks already written do not count twice
