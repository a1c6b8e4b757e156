"""Queries for sampling: which prompts still need tasks, which samples already exist."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app.models import (
    JobState,
    PolicyRating,
    PolicyStatus,
    PolicyVersion,
    Prompt,
    RankingTask,
    RewardModelVersion,
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


def active_prompts(session: Session, project_id: int, *, skip_too_long: bool = False) -> list[int]:
    """Ids of the project's active prompts; without those marked too long if asked."""
    query = select(Prompt.id).where(Prompt.project_id == project_id, Prompt.active)
    if skip_too_long:
        query = query.where(Prompt.too_long.is_(False))
    return list(session.scalars(query.order_by(Prompt.id)))


def too_long_prompts(session: Session, prompt_ids: Sequence[int]) -> set[int]:
    """Those of the prompts marked too long."""
    if not prompt_ids:
        return set()
    return set(session.scalars(select(Prompt.id).where(Prompt.id.in_(prompt_ids), Prompt.too_long)))


def finished_jobs_outside_rounds(
    session: Session, project_id: int, *, limit: int
) -> list[SamplingJob]:
    """The project's latest finished (done, failed, cancelled) jobs that no round started,
    newest first: top-ups, "Sample more" and `rankloop sample`."""
    return list(
        session.scalars(
            select(SamplingJob)
            .where(
                SamplingJob.project_id == project_id,
                SamplingJob.round_id.is_(None),
                SamplingJob.state.in_([JobState.done, JobState.failed, JobState.cancelled]),
            )
            .order_by(SamplingJob.id.desc())
            .limit(limit)
        )
    )


def tries_by_prompt(session: Session, *, version_id: int) -> Counter[int]:
    """Per prompt: the tasks (not cancelled) that show samples of the version, plus the finished
    jobs of the version that had to skip it (the model repeated itself), so a prompt the model
    cannot vary is not picked first by every later job."""
    tasks = session.execute(
        select(RankingTask.prompt_id, func.count(distinct(RankingTask.id)))
        .join(TaskSample, TaskSample.task_id == RankingTask.id)
        .join(Sample, Sample.id == TaskSample.sample_id)
        .where(Sample.policy_version_id == version_id, RankingTask.status != TaskStatus.cancelled)
        .group_by(RankingTask.prompt_id)
    ).all()
    tries: Counter[int] = Counter({prompt_id: int(n) for prompt_id, n in tasks})
    finished = (SamplingJob.policy_version_id == version_id, SamplingJob.state == JobState.done)
    made = set(
        session.execute(
            select(RankingTask.sampling_job_id, RankingTask.prompt_id)
            .join(SamplingJob, SamplingJob.id == RankingTask.sampling_job_id)
            .where(*finished)
        ).tuples()
    )
    for job_id, prompt_ids in session.execute(
        select(SamplingJob.id, SamplingJob.prompt_ids).where(*finished)
    ):
        tries.update(p for p in prompt_ids if (job_id, p) not in made)
    return tries


def prompts_with_task_by_job(session: Session, job_ids: Sequence[int]) -> dict[int, set[int]]:
    """{job: prompts it made a task for}."""
    out: dict[int, set[int]] = defaultdict(set)
    if not job_ids:
        return out
    rows = session.execute(
        select(RankingTask.sampling_job_id, RankingTask.prompt_id).where(
            RankingTask.sampling_job_id.in_(job_ids)
        )
    )
    for job_id, prompt_id in rows:
        if job_id is not None:
            out[job_id].add(prompt_id)
    return out


def samples_in_tasks(session: Session, prompt_ids: Sequence[int]) -> set[int]:
    """Ids of the prompts' samples that a task (not cancelled) shows already."""
    if not prompt_ids:
        return set()
    return set(
        session.scalars(
            select(TaskSample.sample_id)
            .join(RankingTask, RankingTask.id == TaskSample.task_id)
            .where(
                RankingTask.prompt_id.in_(prompt_ids),
                RankingTask.status != TaskStatus.cancelled,
            )
        )
    )


def samples_of_prompts(session: Session, prompt_ids: Sequence[int]) -> dict[int, list[Sample]]:
    """Every version's samples of the prompts, by prompt, in ordinal order per version."""
    out: dict[int, list[Sample]] = defaultdict(list)
    if not prompt_ids:
        return out
    rows = session.scalars(
        select(Sample)
        .where(Sample.prompt_id.in_(prompt_ids))
        .order_by(Sample.prompt_id, Sample.policy_version_id, Sample.ordinal)
    )
    for sample in rows:
        out[sample.prompt_id].append(sample)
    return out


def prompt_texts(session: Session, prompt_ids: Sequence[int]) -> dict[int, Prompt]:
    return {p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))}


def count_open_tasks(session: Session, project_id: int, *, up_to: int | None = None) -> int:
    """Open tasks of the project, counted to at most `up_to` (a bounded cost for callers that
    only compare with a threshold). Gold tasks never close, so they do not count."""
    open_tasks = select(RankingTask.id).where(
        RankingTask.project_id == project_id,
        RankingTask.status == TaskStatus.open,
        RankingTask.gold.is_(False),
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


def verdict(session: Session, version_id: int) -> str | None:
    """The leaderboard's verdict of the version against its previous one (None: not rated)."""
    return session.scalar(
        select(PolicyRating.verdict).where(PolicyRating.policy_version_id == version_id)
    )


def latest_reward_model_uri(session: Session, project_id: int) -> str | None:
    """Where the project's newest reward model is stored (None before the first)."""
    return session.scalar(
        select(RewardModelVersion.artifact_uri)
        .where(RewardModelVersion.project_id == project_id)
        .order_by(RewardModelVersion.number.desc())
        .limit(1)
    )


def sample_prompts(session: Session, sample_ids: Sequence[int]) -> dict[int, int]:
    """{sample: its prompt}."""
    if not sample_ids:
        return {}
    rows = session.execute(select(Sample.id, Sample.prompt_id).where(Sample.id.in_(sample_ids)))
    return {int(sample_id): int(prompt_id) for sample_id, prompt_id in rows}


def tasks_by_selection_reason(session: Session, project_id: int) -> dict[tuple[str, str], int]:
    """{(selection reason, task status): tasks} of the project's tasks that are not gold."""
    rows = session.execute(
        select(RankingTask.selection_reason, RankingTask.status, func.count())
        .where(RankingTask.project_id == project_id, RankingTask.gold.is_(False))
        .group_by(RankingTask.selection_reason, RankingTask.status)
    )
    return {(reason, status.value): int(n) for reason, status, n in rows}
