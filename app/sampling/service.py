"""Sampling rules: which prompts to sample, how tasks mix versions, idempotent batch writes.

A job is written batch by batch (one short transaction per chunk of prompts), so a long job
shows progress and a crash loses at most one chunk; re-running it skips prompts it already
made a task for, and sample ordinals make sample writes idempotent. A task never shows one
text twice: a worker draws more samples (RESAMPLE_TRIES times) and otherwise skips the prompt.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import after_commit, utcnow
from app.errors import InvalidInput, NotFound
from app.jobs import SAMPLING_RUN_JOB, SAMPLING_TOP_UP, enqueue
from app.models import (
    JobState,
    PolicyKind,
    PolicyVersion,
    Project,
    Prompt,
    RankingTask,
    Sample,
    SamplingJob,
    TaskSample,
)
from app.models.sample import text_key
from app.projects import repository as projects_repository
from app.projects.service import require_project
from app.ratings.bradley_terry import BETTER, WORSE
from app.sampling import repository, selection
from app.sampling.selection import TaskChoice
from app.seeds import derived_seed

logger = logging.getLogger(__name__)

LONG_PROMPTS_TRUNCATE = "truncate"
LONG_PROMPTS_SKIP = "skip"
RESAMPLE_TRIES = 3
"""Further draws for a chunk whose prompts lack K distinct texts, before such a prompt is
skipped (the model repeats itself there; the job's page counts the skipped prompts)."""


@dataclass(frozen=True)
class VersionInfo:
    id: int
    number: int
    base_model: str
    adapter_uri: str | None
    merged_adapter_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingPlan:
    """Everything a worker needs, read once at the start of the job."""

    job_id: int
    project_id: int
    seed: int
    k: int
    n_new: int
    n_prev: int
    temperature: float
    top_p: float
    max_new_tokens: int
    trust_remote_code: bool
    version: VersionInfo
    previous: VersionInfo | None
    prompt_ids: list[int] = field(default_factory=list)
    stop_strings: list[str] | None = None
    """The project's setting: None derives them from the chat template."""
    long_prompts: str = "truncate"
    """The project's setting for a prompt that does not fit the model's context with
    max_new_tokens after it: "truncate" (left, behind a marker) or "skip" (marked too long)."""
    active_prompts: frozenset[int] = frozenset()
    """Under `selection="active"`: the candidate prompts whose tasks are chosen actively (the
    job's prompts not drawn uniformly, `selection.split_uniform`, plus its extra candidate
    prompts); empty under "uniform"."""
    active_needed: int = 0
    """How many of `active_prompts` get a task (`selection.choose_prompts`): the job's own
    prompts not drawn uniformly."""
    undecided: bool = False
    """The version and its previous one are not distinguishable yet on the leaderboard."""
    reward_model_uri: str | None = None
    """The project's latest reward model, whose ensemble scores candidates (active only)."""

    @property
    def pool_new(self) -> int:
        """Newest-version candidates drawn for an actively chosen task."""
        return selection.POOL_FACTOR * self.n_new


@dataclass(frozen=True)
class NewSample:
    """A generated text with what is needed to regenerate it exactly (seed and batch row)."""

    text: str
    finished: bool
    batch_seed: int
    batch_position: int


def mix_counts(k: int, newest_share: float, has_previous: bool) -> tuple[int, int]:
    """Samples per task from the newest and the previous version (⌈K/2⌉ and ⌊K/2⌋ at 0.5)."""
    if not has_previous:
        return k, 0
    n_new = min(k - 1, max(1, math.ceil(k * newest_share - 1e-9)))
    return n_new, k - n_new


def _version_info(version: PolicyVersion, project: Project) -> VersionInfo:
    return VersionInfo(
        id=version.id,
        number=version.number,
        base_model=version.base_model or project.base_model,
        adapter_uri=version.artifact_uri,
        merged_adapter_uris=tuple(version.metrics.get("merged_adapters", [])),
    )


def previous_version(session: Session, version: PolicyVersion) -> PolicyVersion | None:
    if version.parent_id is None:
        return None
    parent = session.get(PolicyVersion, version.parent_id)
    return parent if parent is not None and parent.kind != PolicyKind.external else None


def start_sampling(
    session: Session,
    *,
    project_id: int,
    version_number: int | None = None,
    prompt_limit: int | None = None,
    round_id: int | None = None,
    seed: int | None = None,
    enqueue: bool = True,
) -> SamplingJob | None:
    """Create a job over the active prompts with the fewest tasks for the version: those with
    none while there are any, else further tasks with fresh samples (None if no prompt is free).
    """
    project = _locked_project(session, project_id)
    if version_number is None:
        version = repository.current_version(session, project_id)
        if version is None:
            raise NotFound(f"Project {project.name!r} has no current policy version")
    else:
        version = repository.get_version(session, project_id, version_number)
        if version is None:
            raise NotFound(f"Project {project.name!r} has no policy version {version_number}")
    if version.kind == PolicyKind.external:
        raise InvalidInput(
            f"Version {version.number} holds uploaded samples of an outside model; "
            "there is no model to sample from"
        )
    if prompt_limit is not None and prompt_limit < 1:
        raise InvalidInput("prompts must be at least 1", details={"field": "prompts"})
    claimed = {
        prompt_id
        for job in _live_jobs(session, project_id)
        if job.policy_version_id == version.id
        for prompt_id in job.prompt_ids
    }
    return _new_job(
        session,
        version=version,
        prompt_limit=prompt_limit,
        claimed=claimed,
        round_id=round_id,
        seed=seed,
        enqueue=enqueue,
    )


def _locked_project(session: Session, project_id: int) -> Project:
    """One job per prompt: with the project locked, a round's sampling and a top-up (or two
    top-ups) cannot both pick the same prompts and then collide writing them."""
    project = projects_repository.lock_project(session, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}")
    return project


def _new_job(
    session: Session,
    *,
    version: PolicyVersion,
    prompt_limit: int | None,
    claimed: set[int],
    round_id: int | None = None,
    seed: int | None = None,
    enqueue: bool = True,
) -> SamplingJob | None:
    """A job over the active prompts that no live job holds (`claimed`) and that have been
    tried least for the version (ties by id); the caller holds the project's lock."""
    tries = repository.tries_by_prompt(session, version_id=version.id)
    project = session.get(Project, version.project_id)
    skip_too_long = project is not None and project.long_prompts == LONG_PROMPTS_SKIP
    free = sorted(
        (tries[p], p)
        for p in repository.active_prompts(session, version.project_id, skip_too_long=skip_too_long)
        if p not in claimed
    )
    prompt_ids = [p for n, p in free if n == free[0][0]][:prompt_limit] if free else []
    if not prompt_ids:
        return None
    extra: list[int] = []
    if (
        project is not None
        and project.selection == "active"
        and repository.latest_reward_model_uri(session, project.id) is not None
    ):
        # Prompt-level selection: candidates beyond the job's own prompts, next in the order
        # of fewest tasks; without a reward model nothing could choose among them.
        wanted = selection.candidate_count(len(prompt_ids), project.uniform_share)
        chosen = set(prompt_ids)
        extra = [p for _, p in free if p not in chosen][:wanted]
    job = SamplingJob(
        project_id=version.project_id,
        policy_version_id=version.id,
        round_id=round_id,
        # The job's own prompts first, its extra candidates after: `prompts_total` counts the
        # former (the tasks it makes), which `begin_job` splits as before.
        prompt_ids=prompt_ids + extra,
        prompts_total=len(prompt_ids),
    )
    session.add(job)
    session.flush()
    job.seed = seed if seed is not None else derived_seed("sampling job", job.id)
    if enqueue:
        job_id = job.id
        after_commit(session, lambda: send_sampling_job(job_id))
    return job


def send_sampling_job(job_id: int) -> None:
    enqueue(SAMPLING_RUN_JOB, job_id)


def note_task_closed(session: Session, *, project_id: int) -> None:
    """Called by a submit that completed a task: when the project's open tasks fall below its
    threshold, a worker is asked to sample more once the submit commits. The submit holds
    locks, so it only counts (at most min_open_tasks rows) and leaves the rest to the worker."""
    project = require_project(session, project_id)
    threshold = project.min_open_tasks
    if threshold <= 0:
        return
    if repository.count_open_tasks(session, project_id, up_to=threshold) < threshold:
        after_commit(session, lambda: send_top_up(project_id))


def send_top_up(project_id: int) -> None:
    """After the submit committed: a broker failure must not turn a saved ranking into an
    error; the next completed task asks again."""
    try:
        enqueue(SAMPLING_TOP_UP, project_id)
    except Exception:
        logger.exception("could not send sampling.top_up for project %s", project_id)


def top_up_if_needed(session: Session, *, project_id: int, batch: int = 20) -> SamplingJob | None:
    """Keep annotators busy: sample more prompts when open tasks fall below the threshold.

    The project row is locked first, so two workers topping up at once start one job; a
    running job whose heartbeat went stale (its worker died) is failed rather than left to
    block every later top-up. After failed jobs it backs off (`top_up_resumes_at`) instead of
    starting one more failing job at every submit."""
    project = _locked_project(session, project_id)
    threshold = project.min_open_tasks
    if repository.count_open_tasks(session, project_id, up_to=threshold) >= threshold:
        return None
    # Before stale jobs are failed below: a job whose worker died is replaced at once.
    resumes = top_up_resumes_at(session, project_id=project_id)
    if _live_jobs(session, project_id):
        return None
    if resumes is not None and utcnow() < resumes:
        logger.info(
            "project %s: no automatic sampling before %s (the last jobs failed)",
            project_id,
            resumes.isoformat(timespec="seconds"),
        )
        return None
    version = repository.current_version(session, project_id)
    if version is None or version.kind == PolicyKind.external:
        return None
    return _new_job(session, version=version, prompt_limit=batch, claimed=set())


TOP_UP_BACKOFF = timedelta(minutes=2)
"""After a failed job, automatic sampling waits this long; twice as long after each further
failure in a row, up to TOP_UP_BACKOFF_MAX."""
TOP_UP_BACKOFF_MAX = timedelta(hours=1)


def top_up_resumes_at(session: Session, *, project_id: int) -> datetime | None:
    """When a top-up may start again after the latest jobs outside rounds failed: n failures
    in a row (newest first) wait TOP_UP_BACKOFF × 2^(n-1) from the last one, at most
    TOP_UP_BACKOFF_MAX. None when the latest such job did not fail. "Sample more" and
    `rankloop sample` do not wait: a person asked."""
    jobs = repository.finished_jobs_outside_rounds(session, project_id, limit=12)
    failures = 0
    for job in jobs:
        if job.state != JobState.failed:
            break
        failures += 1
    if not failures:
        return None
    latest = jobs[0]
    wait = min(TOP_UP_BACKOFF * 2 ** (failures - 1), TOP_UP_BACKOFF_MAX)
    return (latest.finished_at or latest.created_at) + wait


def _live_jobs(session: Session, project_id: int) -> list[SamplingJob]:
    """Queued and running jobs; a running one whose heartbeat went stale (its worker died) is
    failed instead, so its prompts can be sampled again."""
    timeout = get_settings().heartbeat_timeout_seconds
    live = []
    for job in repository.active_sampling_jobs(session, project_id):
        beat = job.heartbeat_at or job.created_at
        if job.state == JobState.running and (utcnow() - beat).total_seconds() >= timeout:
            fail_job(
                session,
                job.id,
                f"The worker stopped responding (no heartbeat for more than {timeout} s); "
                "the prompts it did not reach are sampled by a new job.",
            )
        else:
            live.append(job)
    return live


def begin_job(session: Session, job_id: int) -> SamplingPlan | None:
    """Mark the job running and return its plan; None when it is finished or cancelled."""
    job = session.get(SamplingJob, job_id)
    if job is None:
        raise NotFound(f"No sampling job {job_id}")
    if job.state in (JobState.done, JobState.cancelled):
        return None
    project = require_project(session, job.project_id)
    version = session.get(PolicyVersion, job.policy_version_id)
    assert version is not None
    previous = previous_version(session, version)
    n_new, n_prev = mix_counts(
        project.samples_per_prompt, project.newest_version_share, previous is not None
    )
    job.state = JobState.running
    job.started_at = job.started_at or utcnow()
    job.heartbeat_at = utcnow()
    job.error = job.error_detail = None
    active: frozenset[int] = frozenset()
    active_needed = 0
    undecided, rm_uri = False, None
    if project.selection == "active":
        own = job.prompt_ids[: job.prompts_total]
        uniform = selection.split_uniform(
            own, project.uniform_share, derived_seed("task selection", job.seed)
        )
        active = frozenset(job.prompt_ids) - uniform
        active_needed = len(set(own) - uniform)
        # No rating yet counts as undecided: nothing tells the two versions apart so far.
        verdict = repository.verdict(session, version.id)
        undecided = previous is not None and verdict not in (BETTER, WORSE)
        rm_uri = repository.latest_reward_model_uri(session, project.id)
    return SamplingPlan(
        job_id=job.id,
        project_id=project.id,
        seed=job.seed,
        k=project.samples_per_prompt,
        n_new=n_new,
        n_prev=n_prev,
        temperature=project.temperature,
        top_p=project.top_p,
        max_new_tokens=project.max_new_tokens,
        trust_remote_code=project.trust_remote_code,
        version=_version_info(version, project),
        previous=_version_info(previous, project) if previous is not None else None,
        prompt_ids=list(job.prompt_ids),
        stop_strings=project.stop_strings,
        long_prompts=project.long_prompts,
        active_prompts=active,
        active_needed=active_needed,
        undecided=undecided,
        reward_model_uri=rm_uri,
    )


@dataclass
class ChunkNeeds:
    """For one chunk: prompt contents, and how many more samples of the newest / previous
    version each prompt needs for a task of distinct texts."""

    contents: dict[int, Any]
    need_new: dict[int, int]
    need_prev: dict[int, int]
    skip: set[int]
    """Prompts this job already made a task for."""


def chunk_needs(
    session: Session, plan: SamplingPlan, prompt_ids: Sequence[int], *, pool: bool = False
) -> ChunkNeeds:
    """With `pool` (a chunk's first draw), actively chosen prompts ask for their candidate
    pool (`plan.pool_new`); further draws only make up what a task needs."""
    skip = _prompts_done_by(session, plan.job_id, prompt_ids)
    todo = [p for p in prompt_ids if p not in skip]
    prompts = repository.prompt_texts(session, todo)
    samples = repository.samples_of_prompts(session, todo)
    shown = repository.samples_in_tasks(session, todo)
    need_new: dict[int, int] = {}
    need_prev: dict[int, int] = {}
    for p in todo:
        n_new = plan.pool_new if pool and p in plan.active_prompts else plan.n_new
        new, prev = compose_task(plan, samples.get(p, []), shown, n_new=n_new)
        if len(new) < n_new:
            need_new[p] = n_new - len(new)
        if len(prev) < plan.n_prev:
            need_prev[p] = plan.n_prev - len(prev)
    contents = {p: (prompts[p].messages or prompts[p].text) for p in todo}
    return ChunkNeeds(contents=contents, need_new=need_new, need_prev=need_prev, skip=skip)


def compose_task(
    plan: SamplingPlan, samples: Sequence[Sample], shown: set[int], *, n_new: int | None = None
) -> tuple[list[Sample], list[Sample]]:
    """A task's samples of one prompt, no text twice: the previous version's first `n_prev`
    distinct texts (reused, as anchors across versions), then the newest version's first
    `n_new` (default `plan.n_new`; an active task's candidate pool) samples no task shows yet
    whose texts differ from those chosen (either list may come up short)."""
    seen: set[str] = set()

    def first_distinct(candidates: list[Sample], n: int) -> list[Sample]:
        chosen: list[Sample] = []
        for sample in candidates:
            key = text_key(sample.text)
            if len(chosen) < n and key not in seen:
                seen.add(key)
                chosen.append(sample)
        return chosen

    prev_id = plan.previous.id if plan.previous is not None else None
    prev = first_distinct([s for s in samples if s.policy_version_id == prev_id], plan.n_prev)
    new = first_distinct(
        [s for s in samples if s.policy_version_id == plan.version.id and s.id not in shown],
        plan.n_new if n_new is None else n_new,
    )
    return new, prev


def _prompts_done_by(session: Session, job_id: int, prompt_ids: Sequence[int]) -> set[int]:
    """The prompts the job made a task for: a resumed job must not make a second one (other
    jobs' tasks do not count: a job may add a further task to a prompt that has one)."""
    made = repository.prompts_with_task_by_job(session, [job_id]).get(job_id, set())
    return made & set(prompt_ids)


def record_chunk(
    session: Session,
    *,
    plan: SamplingPlan,
    prompt_ids: Sequence[int],
    new_samples: dict[int, list[NewSample]],
    prev_samples: dict[int, list[NewSample]],
) -> int:
    """Store a chunk's samples, and a task for each prompt that has K distinct texts, in one
    transaction; returns the tasks created. Actively chosen prompts only get their samples
    here: the worker scores them and makes their tasks (`record_chosen_tasks`)."""
    job = session.get(SamplingJob, plan.job_id)
    assert job is not None
    done = _prompts_done_by(session, job.id, prompt_ids)
    todo = [p for p in prompt_ids if p not in done]
    samples = repository.samples_of_prompts(session, todo)
    shown = repository.samples_in_tasks(session, todo)
    created = 0
    rng = random.Random(plan.seed * 7919 + (todo[0] if todo else 0))
    for prompt_id in todo:
        existing = samples[prompt_id]
        _store_samples(
            session, plan, plan.version.id, prompt_id, new_samples.get(prompt_id, []), existing
        )
        if plan.previous is not None and plan.n_prev:
            _store_samples(
                session,
                plan,
                plan.previous.id,
                prompt_id,
                prev_samples.get(prompt_id, []),
                existing,
            )
        if prompt_id in plan.active_prompts:
            continue
        new, prev = compose_task(plan, existing, shown)
        if len(new) < plan.n_new or len(prev) < plan.n_prev:
            continue  # not K distinct texts yet: the worker draws more, or skips the prompt
        _add_task(session, plan, prompt_id, [s.id for s in new + prev], rng, selection.UNIFORM)
        created += 1
    _note_progress(job, prompt_ids)
    session.flush()
    return created


def _add_task(
    session: Session,
    plan: SamplingPlan,
    prompt_id: int,
    sample_ids: list[int],
    rng: random.Random,
    reason: str,
) -> None:
    """A task of the job showing the samples in an order drawn from `rng`."""
    rng.shuffle(sample_ids)
    task = RankingTask(
        project_id=plan.project_id,
        prompt_id=prompt_id,
        required_annotations=_required_annotations(session, plan.project_id),
        sampling_job_id=plan.job_id,
        selection_reason=reason,
    )
    session.add(task)
    session.flush()
    session.add_all(
        TaskSample(task_id=task.id, sample_id=s, position=i) for i, s in enumerate(sample_ids)
    )


def _note_progress(job: SamplingJob, prompt_ids: Sequence[int]) -> None:
    # Where this chunk ends in the job's list, not a running sum: a resumed job walks its
    # chunks again from the start, and the ones already written must not count twice.
    position = {prompt_id: i for i, prompt_id in enumerate(job.prompt_ids)}
    chunk_end = max((position[p] + 1 for p in prompt_ids if p in position), default=0)
    job.prompts_done = min(job.prompts_total, max(job.prompts_done, chunk_end))
    job.heartbeat_at = utcnow()


@dataclass(frozen=True)
class Candidates:
    """An actively chosen prompt's samples to choose from: the previous version's anchors
    (shown as under uniform selection) and the newest version's candidates, in draw order."""

    prompt_id: int
    content: Any
    """The prompt's text or messages, to score the samples with."""
    anchors: list[tuple[int, str]]
    candidates: list[tuple[int, str]]
    """(sample id, text) each."""


def active_candidates(
    session: Session, plan: SamplingPlan, prompt_ids: Sequence[int]
) -> list[Candidates]:
    """The chunk's actively chosen prompts that the job has made no task for yet, with up to
    `plan.pool_new` distinct candidates each (read-only: scoring happens outside a
    transaction)."""
    done = _prompts_done_by(session, plan.job_id, prompt_ids)
    todo = [p for p in prompt_ids if p in plan.active_prompts and p not in done]
    samples = repository.samples_of_prompts(session, todo)
    shown = repository.samples_in_tasks(session, todo)
    prompts = repository.prompt_texts(session, todo)
    out = []
    for p in todo:
        new, prev = compose_task(plan, samples.get(p, []), shown, n_new=plan.pool_new)
        out.append(
            Candidates(
                prompt_id=p,
                content=prompts[p].messages or prompts[p].text,
                anchors=[(s.id, s.text) for s in prev],
                candidates=[(s.id, s.text) for s in new],
            )
        )
    return out


def active_tasks_left(session: Session, plan: SamplingPlan) -> int:
    """Actively chosen tasks the job still has to make (all of `plan.active_needed` unless a
    resumed job made them already)."""
    made = _prompts_done_by(session, plan.job_id, list(plan.active_prompts))
    return max(0, plan.active_needed - len(made))


def record_chosen_tasks(
    session: Session,
    *,
    plan: SamplingPlan,
    choices: Sequence[TaskChoice],
    passed_over: Sequence[int] = (),
) -> int:
    """Make the tasks the worker chose for actively chosen prompts (one transaction); a prompt
    the job already made a task for is left alone (a resumed job). Returns the tasks made.
    `passed_over`: candidate prompts that could have had a task but were not chosen; they
    leave the job's prompts, so they are not counted as prompts the model failed to vary
    (`repository.tries_by_prompt`) and later jobs may pick them."""
    job = session.get(SamplingJob, plan.job_id)
    assert job is not None
    if passed_over:
        dropped = set(passed_over)
        job.prompt_ids = [p for p in job.prompt_ids if p not in dropped]
    prompt_ids = [c.prompt_id for c in choices]
    done = _prompts_done_by(session, job.id, prompt_ids)
    owners = repository.sample_prompts(session, [s for c in choices for s in c.sample_ids])
    created = 0
    rng = random.Random(plan.seed * 7919 + 1 + (prompt_ids[0] if prompt_ids else 0))
    for choice in choices:
        if choice.prompt_id in done or choice.prompt_id not in plan.active_prompts:
            continue
        if choice.reason not in selection.REASONS:
            raise ValueError(f"unknown selection reason {choice.reason!r}")
        if any(owners.get(s) != choice.prompt_id for s in choice.sample_ids):
            raise ValueError(f"task of prompt {choice.prompt_id} shows another prompt's sample")
        _add_task(session, plan, choice.prompt_id, list(choice.sample_ids), rng, choice.reason)
        created += 1
    job.heartbeat_at = utcnow()
    session.flush()
    return created


def _required_annotations(session: Session, project_id: int) -> int:
    project = session.get(Project, project_id)
    assert project is not None
    return project.annotations_per_task


def _store_samples(
    session: Session,
    plan: SamplingPlan,
    version_id: int,
    prompt_id: int,
    generated: list[NewSample],
    existing: list[Sample],
) -> None:
    """Insert generated samples of a version under ordinals not taken yet, appending them to
    `existing` (the prompt's samples of every version). A text another version wrote too is
    marked on both sides (`repeats_other_version`)."""
    taken = {s.ordinal for s in existing if s.policy_version_id == version_id}
    seen_texts = {text_key(s.text) for s in existing if s.policy_version_id == version_id}
    params = {
        "temperature": plan.temperature,
        "top_p": plan.top_p,
        "max_new_tokens": plan.max_new_tokens,
    }
    ordinal = 0
    for item in generated:
        while ordinal in taken:
            ordinal += 1
        key = text_key(item.text)
        repeated = [
            s for s in existing if s.policy_version_id != version_id and text_key(s.text) == key
        ]
        for other in repeated:
            other.repeats_other_version = True
        sample = Sample(
            project_id=plan.project_id,
            prompt_id=prompt_id,
            policy_version_id=version_id,
            ordinal=ordinal,
            text=item.text,
            generation_params=params,
            batch_seed=item.batch_seed,
            batch_position=item.batch_position,
            sampling_job_id=plan.job_id,
            finished=item.finished,
            is_empty=not item.text.strip(),
            is_duplicate=key in seen_texts,
            repeats_other_version=bool(repeated),
        )
        seen_texts.add(key)
        taken.add(ordinal)
        session.add(sample)
        existing.append(sample)
    session.flush()


def record_prompt_lengths(session: Session, lengths: dict[int, tuple[int | None, bool]]) -> None:
    """Store what the worker measured: {prompt: (tokens, too long for the model)}."""
    if not lengths:
        return
    for prompt in session.scalars(select(Prompt).where(Prompt.id.in_(list(lengths)))):
        count, too_long = lengths[prompt.id]
        if count is not None:
            prompt.token_count = count
        prompt.too_long = too_long
    session.flush()


@dataclass(frozen=True)
class PromptFailure:
    """A prompt a job could not sample (the others were): its id and the error, one line."""

    prompt_id: int
    error: str


def finish_job(session: Session, job_id: int, *, failures: Sequence[PromptFailure] = ()) -> None:
    """Mark the job done; prompts it could not sample are named on it (error: one line;
    error_detail: each one's exception) while the others keep their tasks."""
    job = session.get(SamplingJob, job_id)
    if job is not None:
        job.state = JobState.done
        job.finished_at = utcnow()
        job.prompts_done = job.prompts_total
        if failures:
            named = ", ".join(f"#{f.prompt_id}" for f in failures[:10])
            more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
            s = "" if len(failures) == 1 else "s"
            job.error = (
                f"{len(failures)} prompt{s} could not be sampled ({named}{more}); the others "
                "were. Check the prompt's text, or deactivate it; the worker log has details."
            )
            detail = "\n".join(f"prompt #{f.prompt_id}: {f.error}" for f in failures)
            job.error_detail = detail[:20000]


def fail_job(session: Session, job_id: int, error: str, *, detail: str | None = None) -> None:
    """`error`: one line, what failed and what to do; `detail`: the traceback for admins,
    without server paths (worker.failures)."""
    job = session.get(SamplingJob, job_id)
    if job is not None:
        job.state = JobState.failed
        job.error = error[:2000]
        job.error_detail = detail[-20000:] if detail is not None else None
        job.finished_at = utcnow()


@dataclass(frozen=True)
class JobView:
    """A sampling job as the project page and the API show it."""

    id: int
    project_id: int
    policy_version: int
    """The number of the version it samples."""
    round_id: int | None
    state: str
    prompts_done: int
    prompts_total: int
    prompts_skipped: int
    """Prompts a finished job made no task for: the model repeated itself there, and K
    distinct texts did not come out of RESAMPLE_TRIES further draws (or sampling the prompt
    failed: the job's error names it). Too-long prompts are counted apart."""
    prompts_too_long: int
    """Prompts a finished job made no task for because they are too long for the model and
    the project skips such prompts (`long_prompts` = "skip")."""
    prompts_shortened: int
    """Prompts a finished job sampled although too long for the model (`long_prompts` =
    "truncate"): a conversation's oldest turns dropped, then the start cut if still too long."""
    error: str | None
    """One line: what failed and what to do."""
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_detail: str | None = None
    """The traceback, without server paths: for admins (the project page's details block)."""

    @property
    def active(self) -> bool:
        return self.state in (JobState.queued.value, JobState.running.value)


def recent_jobs(
    session: Session, *, project_id: int, before_id: int | None = None, limit: int = 5
) -> list[JobView]:
    """Newest first: what runs now (top-ups, rounds' sampling) and what failed."""
    jobs = repository.recent_jobs(session, project_id, before_id=before_id, limit=limit)
    made = repository.prompts_with_task_by_job(session, [job.id for job, _ in jobs])
    without_task = {
        job.id: set(job.prompt_ids) - made.get(job.id, set())
        for job, _ in jobs
        if job.state == JobState.done
    }
    project = session.get(Project, project_id)
    skips = project is not None and project.long_prompts == LONG_PROMPTS_SKIP
    # Under "truncate" a too-long prompt is sampled; one left without a task is skipped for
    # another reason (the model repeated itself).
    too_long = (
        repository.too_long_prompts(session, sorted(set().union(*without_task.values())))
        if skips
        else set()
    )
    sampled = {
        job.id: set(job.prompt_ids) & made.get(job.id, set())
        for job, _ in jobs
        if job.state == JobState.done and not skips
    }
    shortened = repository.too_long_prompts(session, sorted(set().union(*sampled.values())))
    return [
        JobView(
            id=job.id,
            project_id=job.project_id,
            policy_version=number,
            round_id=job.round_id,
            state=job.state.value,
            prompts_done=job.prompts_done,
            prompts_total=job.prompts_total,
            prompts_skipped=len(without_task.get(job.id, set()) - too_long),
            prompts_too_long=len(without_task.get(job.id, set()) & too_long),
            prompts_shortened=len(sampled.get(job.id, set()) & shortened),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error_detail=job.error_detail,
        )
        for job, number in jobs
    ]


@dataclass(frozen=True)
class SelectionRow:
    """Tasks made for one reason (`RankingTask.selection_reason`), as the project page shows."""

    reason: str
    label: str
    open: int
    done: int


SELECTION_LABELS = {
    selection.UNCERTAINTY: "reward model uncertain",
    selection.UNDECIDED: "versions not distinguishable yet",
    selection.UNIFORM: "drawn uniformly",
}


def selection_summary(session: Session, *, project_id: int) -> list[SelectionRow]:
    """Why the project's tasks (gold tasks aside) were chosen: open and complete tasks per
    reason; empty while every task is a uniform one (nothing to explain)."""
    counts = repository.tasks_by_selection_reason(session, project_id)
    if not any(n for (reason, _), n in counts.items() if reason != selection.UNIFORM):
        return []
    return [
        SelectionRow(
            reason=reason,
            label=SELECTION_LABELS[reason],
            open=counts.get((reason, "open"), 0),
            done=counts.get((reason, "complete"), 0),
        )
        for reason in selection.REASONS
    ]
