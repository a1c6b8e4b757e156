"""Run a sampling job: generate chunk by chunk, commit each chunk's samples and tasks."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

from app.db import session_scope
from app.sampling import service
from app.sampling.service import NewSample, SamplingPlan, VersionInfo
from worker.policies import PolicySpec, load_policy_for_generation

Progress = Callable[[int, int], None]
PREVIOUS_SEED_OFFSET = 7919  # previous-version samples use their own seeds


def _spec(version: VersionInfo, plan: SamplingPlan) -> PolicySpec:
    return PolicySpec(
        version_id=version.id,
        base_model=version.base_model,
        adapter_uri=version.adapter_uri,
        trust_remote_code=plan.trust_remote_code,
        merged_adapter_uris=version.merged_adapter_uris,
    )


def _generate(
    model: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    contents: Sequence[Any],
    *,
    n_per_prompt: int,
    seed: int,
    batch_size: int,
) -> list[list[NewSample]]:
    from worker.training.generation import GenerationSettings, generate_samples

    settings = GenerationSettings(
        max_new_tokens=plan.max_new_tokens,
        temperature=plan.temperature,
        top_p=plan.top_p,
        stop_strings=plan.stop_strings,
    )
    generated = generate_samples(
        model,
        tokenizer,
        list(contents),
        n_per_prompt=n_per_prompt,
        settings=settings,
        seed=seed,
        batch_size=batch_size,
    )
    return [
        [NewSample(g.text, g.finished, g.seed, g.index) for g in per_prompt]
        for per_prompt in generated
    ]


def _draw(
    model: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    contents: dict[int, Any],
    missing: dict[int, int],
    *,
    seed: int,
    attempt: int,
    batch_size: int,
) -> dict[int, list[NewSample]]:
    """As many samples per prompt as the neediest prompt lacks (`missing`: prompt → count);
    twice that on a further draw, where the model has already repeated itself."""
    from worker.training.generation import batch_seed

    prompt_ids = list(missing)
    texts = _generate(
        model,
        tokenizer,
        plan,
        [contents[p] for p in prompt_ids],
        n_per_prompt=max(missing.values()) * (2 if attempt else 1),
        seed=batch_seed(seed, attempt) if attempt else seed,
        batch_size=batch_size,
    )
    return dict(zip(prompt_ids, texts, strict=True))


def run_sampling_job(
    job_id: int,
    *,
    progress: Progress | None = None,
    prompts_per_chunk: int = 8,
    batch_size: int = 16,
) -> int:
    """Returns the number of tasks created. Safe to run again: finished work is skipped."""
    from worker.training.generation import batch_seed

    with session_scope() as session:
        plan = service.begin_job(session, job_id)
    if plan is None:
        return 0
    created = 0
    try:
        model, tokenizer = load_policy_for_generation(_spec(plan.version, plan))
        previous: tuple[Any, Any] | None = None
        ids = plan.prompt_ids
        for chunk_index, start in enumerate(range(0, len(ids), prompts_per_chunk)):
            chunk = ids[start : start + prompts_per_chunk]
            # Draw until every prompt has K distinct texts, at most RESAMPLE_TRIES times more;
            # a prompt still short then is skipped (the job's page counts it).
            for attempt in range(1 + service.RESAMPLE_TRIES):
                with session_scope(readonly=True) as session:
                    needs = service.chunk_needs(session, plan, chunk)
                if attempt and not (needs.need_new or needs.need_prev):
                    break
                new: dict[int, list[NewSample]] = {}
                if needs.need_new:
                    new = _draw(
                        model,
                        tokenizer,
                        plan,
                        needs.contents,
                        needs.need_new,
                        seed=batch_seed(plan.seed, chunk_index),
                        attempt=attempt,
                        batch_size=batch_size,
                    )
                prev: dict[int, list[NewSample]] = {}
                if needs.need_prev and plan.previous is not None:
                    previous = previous or load_policy_for_generation(_spec(plan.previous, plan))
                    prev = _draw(
                        *previous,
                        plan,
                        needs.contents,
                        needs.need_prev,
                        seed=batch_seed(plan.seed + PREVIOUS_SEED_OFFSET, chunk_index),
                        attempt=attempt,
                        batch_size=batch_size,
                    )
                with session_scope() as session:
                    created += service.record_chunk(
                        session, plan=plan, prompt_ids=chunk, new_samples=new, prev_samples=prev
                    )
            if progress is not None:
                progress(min(start + len(chunk), len(ids)), len(ids))
        with session_scope() as session:
            service.finish_job(session, job_id)
    except Exception:
        with session_scope() as session:
            service.fail_job(session, job_id, traceback.format_exc(limit=5))
        raise
    return created


def top_up(project_id: int) -> int | None:
    """Start a sampling job when the project is below its minimum of open tasks (the job runs
    as its own message); the id of the job started, or None."""
    with session_scope() as session:
        job = service.top_up_if_needed(session, project_id=project_id)
        return job.id if job is not None else None
