"""Queries for sampling: which prompts still need tasks, which samples already exist."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.models import (
    JobState,
    PolicyStatus,
    PolicyVersion,
    Prompt,
    RankingTask,
    Sample,
    SamplingJob,
    TaskSample,
    TaskStatus,
)


def current_version(session: Session, project_id: int) -> PolicyVersion | None:
    return session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.status == PolicyStatus.current
        )
    )


def get_version(session: Session, project_id: int, number: int) -> PolicyVersion | None:
    return session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.number == number
        )
    )


def _has_task_for_version(version_id: int):  # type: ignore[no-untyped-def]
    """EXISTS: the prompt already has a task showing samples of this version."""
    return exists(
        select(TaskSample.task_id)
        .join(Sample, Sample.id == TaskSample.sample_id)
        .join(RankingTask, RankingTask.id == TaskSample.task_id)
        .where(
            Sample.policy_version_id == version_id,
            RankingTask.prompt_id == Prompt.id,
            RankingTask.status != TaskStatus.cancelled,
        )
    )


def prompts_without_task(
    session: Session, *, project_id: int, version_id: int, limit: int | None
) -> list[int]:
    query = (
        select(Prompt.id)
        .where(Prompt.project_id == project_id, Prompt.active, ~_has_task_for_version(version_id))
        .order_by(Prompt.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def prompts_with_task(session: Session, *, version_id: int, prompt_ids: Sequence[int]) -> set[int]:
    if not prompt_ids:
        return set()
    return set(
        session.scalars(
            select(Prompt.id).where(Prompt.id.in_(prompt_ids), _has_task_for_version(version_id))
        )
    )


def samples_by_prompt(
    session: Session, *, version_id: int, prompt_ids: Sequence[int]
) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = defaultdict(list)
    if not prompt_ids:
        return out
    rows = session.scalars(
        select(Sample)
        .where(Sample.policy_version_id == version_id, Sample.prompt_id.in_(prompt_ids))
        .order_by(Sample.prompt_id, Sample.ordinal)
    )
    for sample in rows:
        out[sample.prompt_id].append(sample)
    return out


def prompt_texts(session: Session, prompt_ids: Sequence[int]) -> dict[int, Prompt]:
    return {p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))}


def count_open_tasks(session: Session, project_id: int, *, up_to: int | None = None) -> int:
    """Open tasks of the project, counted to at most `up_to` (a bounded cost for callers that
    only compare with a threshold)."""
    open_tasks = select(RankingTask.id).where(
        RankingTask.project_id == project_id, RankingTask.status == TaskStatus.open
    )
    if up_to is not None:
        open_tasks = open_tasks.limit(up_to)
    return int(session.scalar(select(func.count()).select_from(open_tasks.subquery())) or 0)


def active_sampling_jobs(session: Session, project_id: int) -> list[SamplingJob]:
    return list(
        session.scalars(
            select(SamplingJob).where(
                SamplingJob.project_id == project_id,
                SamplingJob.state.in_([JobState.queued, JobState.running]),
            )
        )
    )


def recent_jobs(
    session: Session, project_id: int, *, before_id: int | None, limit: int
) -> list[tuple[SamplingJob, int]]:
    """The project's sampling jobs newest first (older than `before_id` when given), with
    their policy version's number."""
    query = (
        select(SamplingJob, PolicyVersion.number)
        .join(PolicyVersion, PolicyVersion.id == SamplingJob.policy_version_id)
        .where(SamplingJob.project_id == project_id)
        .order_by(SamplingJob.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(SamplingJob.id < before_id)
    return [(job, number) for job, number in session.execute(query)]
