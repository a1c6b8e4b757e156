"""Sampling rules without a model (record_chunk gets hand-made generations): seeds from job
ids, tasks that never show one text twice, texts repeated across versions marked, further
tasks once every prompt has one, and resumed jobs that make no second task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project, Prompt, RankingTask, Sample, SamplingJob
from app.projects.service import add_prompts
from app.sampling import service
from app.sampling.service import NewSample, SamplingPlan
from app.seeds import derived_seed
from tests.factories import (
    make_current_version,
    make_project,
    make_prompt,
    make_task,
    task_shows,
)


def _prompts(session: Session, project: Project, n: int) -> list[Prompt]:
    contents = [f"Distinct prompt {project.id}.{i}?" for i in range(n)]
    return add_prompts(session, project_id=project.id, contents=contents).added


def _job(session: Session, project: Project, **kwargs: Any) -> tuple[SamplingJob, SamplingPlan]:
    job = service.start_sampling(session, project_id=project.id, enqueue=False, **kwargs)
    assert job is not None
    plan = service.begin_job(session, job.id)
    assert plan is not None
    return job, plan


def _drawn(*texts: str) -> list[NewSample]:
    return [NewSample(text, True, 7, i) for i, text in enumerate(texts)]


def _record(session: Session, plan: SamplingPlan, texts: dict[int, list[str]]) -> int:
    return service.record_chunk(
        session,
        plan=plan,
        prompt_ids=list(texts),
        new_samples={p: _drawn(*t) for p, t in texts.items()},
        prev_samples={},
    )


def _task_texts(session: Session, task_id: int) -> list[str]:
    return task_shows(session, task_id, Sample.text)


def _tasks(session: Session, prompt_id: int) -> list[RankingTask]:
    return list(
        session.scalars(
            select(RankingTask).where(RankingTask.prompt_id == prompt_id).order_by(RankingTask.id)
        )
    )


def test_a_job_without_a_seed_takes_one_derived_from_its_id(db_session: Session) -> None:
    project = make_project(db_session)
    _prompts(db_session, project, 3)

    first, _ = _job(db_session, project, prompt_limit=1)
    second, _ = _job(db_session, project, prompt_limit=1)
    chosen, _ = _job(db_session, project, prompt_limit=1, seed=1234)

    assert first.seed == derived_seed("sampling job", first.id)
    assert second.seed == derived_seed("sampling job", second.id)
    assert first.seed != second.seed
    assert 0 <= first.seed < 2**31
    assert chosen.seed == 1234  # an explicit seed wins


def test_a_task_never_shows_two_samples_of_one_text(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    prompt = make_prompt(db_session, project)
    _, plan = _job(db_session, project)

    first = _record(db_session, plan, {prompt.id: ["Paris.", "  paris. ", "Lyon.", "Nice."]})

    assert first == 0  # three distinct texts for K = 4: no task yet
    assert service.chunk_needs(db_session, plan, [prompt.id]).need_new == {prompt.id: 1}
    assert _record(db_session, plan, {prompt.id: ["Lille."]}) == 1
    (task,) = _tasks(db_session, prompt.id)
    assert sorted(_task_texts(db_session, task.id)) == ["Lille.", "Lyon.", "Nice.", "Paris."]
    copy = db_session.scalars(select(Sample).where(Sample.text == "  paris. ")).one()
    assert copy.is_duplicate


def test_a_prompt_without_k_distinct_texts_is_skipped_and_counted(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    stuck, fine = _prompts(db_session, project, 2)
    job, plan = _job(db_session, project)

    created = _record(db_session, plan, {stuck.id: ["Yes."] * 4, fine.id: ["A.", "B.", "C.", "D."]})
    service.finish_job(db_session, job.id)

    assert created == 1
    (view,) = service.recent_jobs(db_session, project_id=project.id)
    assert (view.prompts_total, view.prompts_skipped) == (2, 1)


def test_a_sample_repeating_another_version_is_marked_and_kept_out_of_its_task(
    db_session: Session,
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    prompt = make_prompt(db_session, project)
    make_task(
        db_session, project, prompt=prompt, texts=["Old one.", "Old two.", "Old 3.", "Old 4."]
    )
    make_current_version(db_session, project)
    _, plan = _job(db_session, project)
    assert (plan.n_new, plan.n_prev) == (2, 2)

    created = _record(db_session, plan, {prompt.id: ["OLD ONE.", "New one.", "New two."]})

    assert created == 1
    task = _tasks(db_session, prompt.id)[-1]
    assert sorted(_task_texts(db_session, task.id)) == [
        "New one.",
        "New two.",
        "Old one.",
        "Old two.",
    ]
    flags = dict(
        db_session.execute(
            select(Sample.text, Sample.repeats_other_version).where(Sample.prompt_id == prompt.id)
        ).all()
    )
    marked = {text for text, repeats in flags.items() if repeats}
    assert marked == {"OLD ONE.", "Old one."}  # both sides of the repeat


def test_once_every_prompt_has_a_task_sampling_adds_further_tasks_with_new_samples(
    db_session: Session,
) -> None:
    project, a, b, first = _two_prompts_sampled_once(db_session)

    second, plan = _job(db_session, project)

    assert second.prompt_ids == [a.id, b.id]
    assert second.seed != first.seed
    needs = service.chunk_needs(db_session, plan, [a.id, b.id])
    assert needs.need_new == {a.id: 4, b.id: 4}  # the first tasks' samples are not shown again
    assert (
        _record(db_session, plan, {a.id: ["a1", "a5", "a6", "a7"], b.id: ["b5", "b6", "b7", "b8"]})
        == 2
    )
    old, new = _tasks(db_session, a.id)
    assert new.sampling_job_id == second.id
    assert sorted(_task_texts(db_session, new.id)) == ["a1", "a5", "a6", "a7"]
    assert not {s.id for s in task_shows(db_session, old.id)} & {
        s.id for s in task_shows(db_session, new.id)
    }
    assert sorted(s.ordinal for s in task_shows(db_session, new.id)) == [4, 5, 6, 7]


def _two_prompts_sampled_once(session: Session) -> tuple[Project, Prompt, Prompt, SamplingJob]:
    """A project (K = 4) with prompts a and b, each with one task from a finished first job:
    (project, a, b, that job)."""
    project = make_project(session, samples_per_prompt=4)
    a, b = _prompts(session, project, 2)
    first, plan = _job(session, project)
    _record(session, plan, {a.id: ["a1", "a2", "a3", "a4"], b.id: ["b1", "b2", "b3", "b4"]})
    service.finish_job(session, first.id)
    return project, a, b, first


def test_a_top_up_adds_further_tasks_when_every_prompt_has_one(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4, min_open_tasks=5)
    (prompt,) = _prompts(db_session, project, 1)
    first, plan = _job(db_session, project)
    _record(db_session, plan, {prompt.id: ["x1", "x2", "x3", "x4"]})
    service.finish_job(db_session, first.id)

    job = service.top_up_if_needed(db_session, project_id=project.id)

    assert job is not None
    assert job.prompt_ids == [prompt.id]


def test_sampling_picks_the_prompts_with_the_fewest_tasks(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    a, b, c = _prompts(db_session, project, 3)
    for _ in range(2):
        job, plan = _job(db_session, project, prompt_limit=1)
        prompt_id = job.prompt_ids[0]
        _record(db_session, plan, {prompt_id: [f"{job.id} {i}" for i in range(4)]})
        service.finish_job(db_session, job.id)
    job, plan = _job(db_session, project)
    _record(db_session, plan, {p: [f"{job.id} {p} {i}" for i in range(4)] for p in job.prompt_ids})
    service.finish_job(db_session, job.id)  # every prompt has one task now

    tried, _ = _job(db_session, project, prompt_limit=1)
    service.finish_job(db_session, tried.id)  # it made no task: the prompt counts as tried

    assert tried.prompt_ids == [a.id]  # ties by id
    assert [len(_tasks(db_session, p.id)) for p in (a, b, c)] == [1, 1, 1]
    next_job, _ = _job(db_session, project)
    assert next_job.prompt_ids == [b.id, c.id]


def test_a_prompt_a_finished_job_skipped_does_not_hold_back_the_next_job(
    db_session: Session,
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    stuck, fine = _prompts(db_session, project, 2)
    first, plan = _job(db_session, project)
    _record(db_session, plan, {stuck.id: ["Yes."] * 4, fine.id: ["1", "2", "3", "4"]})
    service.finish_job(db_session, first.id)

    second, _ = _job(db_session, project)

    assert second.prompt_ids == [stuck.id, fine.id]  # both were tried once


def test_a_resumed_job_makes_no_second_task_for_a_prompt(db_session: Session) -> None:
    project, a, b, _ = _two_prompts_sampled_once(db_session)
    second, plan = _job(db_session, project)
    assert _record(db_session, plan, {a.id: ["a5", "a6", "a7", "a8"]}) == 1  # then it crashed

    needs = service.chunk_needs(db_session, plan, [a.id, b.id])
    again = _record(
        db_session, plan, {a.id: ["a9", "a10", "a11", "a12"], b.id: ["b5", "b6", "b7", "b8"]}
    )

    assert needs.skip == {a.id}
    assert again == 1
    assert [len(_tasks(db_session, p.id)) for p in (a, b)] == [2, 2]
    made = db_session.scalar(select(func.count()).where(RankingTask.sampling_job_id == second.id))
    assert made == 2
