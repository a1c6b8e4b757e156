"""Long inputs never break a project: a prompt far longer than the tiny model's context (256
tokens) is measured, then left-truncated or skipped as the project says, and the other prompts
of its job get their tasks; one prompt that fails never fails the job (the top-up's back-off
after failed jobs: test_top_up_backoff.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import JobState, Prompt, RankingTask, SamplingJob
from app.projects.service import add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase
from tests.factories import make_model_project
from tests.sampling.conftest import start_job
from worker.jobs import sampling as sampling_job
from worker.jobs.sampling import run_sampling_job

LONG = "Tell me everything about " + "the old stone bridge and the river under it, " * 300
SHORT = ["What is a good breakfast?", "Why is the sky blue?"]
CONVERSATION = [
    {"role": "system", "content": "Answer in one short sentence."},
    *(
        {"role": role, "content": f"Old {role} turn {i}: the stone bridge and its river. " * 4}
        for i in range(6)
        for role in ("user", "assistant")
    ),
    {"role": "user", "content": "And why is the sky blue?"},
]
"""Six old exchanges of ~110 tokens before the question: several times the context."""


def _project(db: FreshDatabase, model: Path, **settings: object) -> tuple[int, dict[str, int]]:
    """A project on the tiny model with two short prompts and one of ~3,000 tokens."""
    with db.session() as session:
        project = make_model_project(session, model, max_new_tokens=12, **settings)
        add_prompts(
            session, project_id=project.id, contents=[*SHORT, LONG], measure=False
        )  # unmeasured, as when the web server cannot read the tokenizer: sampling measures
        session.commit()
        ids = {
            p.text: p.id
            for p in session.scalars(select(Prompt).where(Prompt.project_id == project.id))
        }
        return project.id, ids


def _sample(db: FreshDatabase, project_id: int, *, creates: int) -> int:
    """Runs a new job in chunks of 8 prompts, checks that it made `creates` tasks: its id."""
    job_id = start_job(db, project_id)
    assert run_sampling_job(job_id, prompts_per_chunk=8, batch_size=8) == creates
    return job_id


def _tasks_by_prompt(session: Session, project_id: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for prompt_id in session.scalars(
        select(RankingTask.prompt_id).where(RankingTask.project_id == project_id)
    ):
        out[prompt_id] = out.get(prompt_id, 0) + 1
    return out


def test_an_over_long_prompt_is_sampled_from_its_end_by_default(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id, ids = _project(app_database, tiny_model_path)

    job_id = _sample(app_database, project_id, creates=3)

    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.state == JobState.done
        assert job.error is None
        assert _tasks_by_prompt(session, project_id) == dict.fromkeys(ids.values(), 1)
        long = session.get(Prompt, ids[LONG])
        assert long is not None
        assert long.token_count is not None
        assert long.token_count > 2000
        assert long.too_long  # marked, though sampled (truncated) under "truncate"
        short = session.get(Prompt, ids[SHORT[0]])
        assert short is not None
        assert short.token_count
        assert not short.too_long
        assert service.recent_jobs(session, project_id=project_id)[0].prompts_too_long == 0


def test_an_over_long_conversation_loses_its_oldest_turns_and_the_job_counts_it(
    app_database: FreshDatabase, tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=12)
        add_prompts(session, project_id=project.id, contents=[*SHORT, CONVERSATION], measure=False)
        session.commit()
        project_id = project.id

    with caplog.at_level(logging.INFO, logger=sampling_job.__name__):
        _sample(app_database, project_id, creates=3)

    assert "1 prompts lost their oldest turns and 0 were left-truncated" in caplog.text
    with app_database.session() as session:
        (view,) = service.recent_jobs(session, project_id=project_id)
        assert (view.prompts_shortened, view.prompts_too_long, view.prompts_skipped) == (1, 0, 0)


def test_a_project_that_skips_long_prompts_marks_it_and_samples_the_others(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id, ids = _project(app_database, tiny_model_path, long_prompts="skip")

    _sample(app_database, project_id, creates=2)

    with app_database.session() as session:
        assert set(_tasks_by_prompt(session, project_id)) == {ids[p] for p in SHORT}
        long = session.get(Prompt, ids[LONG])
        assert long is not None
        assert long.too_long
        (view,) = service.recent_jobs(session, project_id=project_id)
        assert (view.state, view.prompts_too_long, view.prompts_skipped) == ("done", 1, 0)
        # Never sampled again: the next job leaves it out from the start.
        again = service.start_sampling(session, project_id=project_id, enqueue=False)
        assert again is not None
        assert ids[LONG] not in again.prompt_ids
        session.rollback()


def test_one_prompt_that_fails_leaves_the_others_their_tasks(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, ids = _project(app_database, tiny_model_path)
    generate = sampling_job._generate

    def fail_on_breakfast(model: Any, tokenizer: Any, plan: Any, contents: Any, **kw: Any) -> Any:
        if SHORT[0] in contents:
            raise IndexError("index out of range in self")
        return generate(model, tokenizer, plan, contents, **kw)

    monkeypatch.setattr(sampling_job, "_generate", fail_on_breakfast)

    job_id = _sample(app_database, project_id, creates=2)

    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.state == JobState.done
        assert set(_tasks_by_prompt(session, project_id)) == {ids[SHORT[1]], ids[LONG]}
        assert job.error is not None
        assert f"1 prompt could not be sampled (#{ids[SHORT[0]]})" in job.error
        assert "IndexError: index out of range in self" in (job.error_detail or "")


def test_a_model_that_samples_nothing_still_fails_the_job(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, _ = _project(app_database, tiny_model_path)

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(sampling_job, "_generate", broken)
    job_id = start_job(app_database, project_id)

    with pytest.raises(RuntimeError, match="device-side assert"):
        run_sampling_job(job_id, prompts_per_chunk=8, batch_size=8)
    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.state == JobState.failed
