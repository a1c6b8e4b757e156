"""Run a sampling job: generate chunk by chunk, commit each chunk's samples and tasks.

Each chunk's prompts are measured in the policy's tokens first (stored on the prompts); one
that does not fit the context with max_new_tokens after it is shortened by generation (a
conversation loses its oldest turns, then what still does not fit its start:
`prompts.fit_prompt`; the job's page counts them), or, when the project skips long prompts,
marked too long and left without a task. A prompt
whose sampling fails is drawn again on its own, and if it fails alone it is named on the
job while the others get their tasks: one bad prompt never fails the job.

Under active selection (app/sampling/selection.py) a chunk's candidate prompts first get a pool
of candidate samples; once the chunk is drawn, the reward model's bootstrap ensemble scores
them (outside any transaction) and each such prompt's best task keeps the samples it is least
sure about. When every chunk is drawn, the prompts whose best tasks the ensemble disagrees on
most (`selection.choose_prompts`, the job's share of actively chosen tasks) get their tasks.

The texts come from the project's generation backend (worker/generation_backends: 'hf' in this
process, an OpenAI-compatible server, or vLLM in-process) under the same batches and seeds; a
backend that cannot generate at all (`BackendUnavailable`) fails the job at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts import get_store
from app.db import session_scope
from app.judges import service as judges
from app.sampling import selection, service
from app.sampling.selection import TaskChoice
from app.sampling.service import (
    Candidates,
    ChunkNeeds,
    NewSample,
    PromptFailure,
    SamplingPlan,
    VersionInfo,
)
from worker.failures import describe
from worker.policies import PolicySpec, load_policy_for_generation

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PREVIOUS_SEED_OFFSET = 7919  # previous-version samples use their own seeds
SYSTEMIC_FAILURES = 3
"""Prompts failing alone, with none sampled yet, after which the job itself fails (the model,
not a prompt, is at fault)."""


def _spec(version: VersionInfo, plan: SamplingPlan) -> PolicySpec:
    return PolicySpec(
        version_id=version.id,
        base_model=version.base_model,
        adapter_uri=version.adapter_uri,
        trust_remote_code=plan.trust_remote_code,
        merged_adapter_uris=version.merged_adapter_uris,
    )


def _backend(plan: SamplingPlan, version: VersionInfo, config: Any) -> Any:
    """The GenerationBackend sampling `version`: 'hf' loads it here, the others through
    `backend_for`."""
    if config.kind == "hf":
        from worker.generation_backends.hf import HFBackend

        return HFBackend(*load_policy_for_generation(_spec(version, plan)))
    from worker.generation_backends import VersionRef, backend_for

    ref = VersionRef(
        id=version.id,
        number=version.number,
        base_model=version.base_model,
        adapter_uri=version.adapter_uri,
        merged_adapter_uris=version.merged_adapter_uris,
        trust_remote_code=plan.trust_remote_code,
    )
    return backend_for(config, ref)


def _generate(
    backend: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    contents: Sequence[Any],
    *,
    n_per_prompt: int,
    seed: int,
    batch_size: int,
) -> list[list[NewSample]]:
    """`tokenizer` is the backend's (kept in the signature the draws pass along)."""
    from worker.generation_backends import generate_samples

    generated = generate_samples(
        backend,
        list(contents),
        n_per_prompt=n_per_prompt,
        settings=_settings(plan),
        seed=seed,
        batch_size=batch_size,
    )
    dropped = sum(1 for per_prompt in generated if per_prompt[0].prompt_dropped)
    truncated = sum(1 for per_prompt in generated if per_prompt[0].prompt_truncated)
    if dropped or truncated:
        logger.info(
            "sampling job %s: to fit the context, %d prompts lost their oldest turns and %d "
            "were left-truncated",
            plan.job_id,
            dropped,
            truncated,
        )
    return [
        [NewSample(g.text, g.finished, g.seed, g.index) for g in per_prompt]
        for per_prompt in generated
    ]


def _settings(plan: SamplingPlan) -> Any:
    from worker.training.generation import GenerationSettings

    return GenerationSettings(
        max_new_tokens=plan.max_new_tokens,
        temperature=plan.temperature,
        top_p=plan.top_p,
        stop_strings=plan.stop_strings,
    )


def _measure(
    tokenizer: Any, plan: SamplingPlan, contents: dict[int, Any], budget: int | None
) -> set[int]:
    """Store each prompt's length in tokens and whether it is too long for the model; the
    too-long ones when the project skips them (else generation shortens them, `fit_prompt`)."""
    from worker.training.prompts import count_prompt_tokens

    ids = list(contents)
    counts = count_prompt_tokens(tokenizer, [contents[p] for p in ids])
    lengths = {
        p: (n, n is not None and budget is not None and n > budget)
        for p, n in zip(ids, counts, strict=True)
    }
    with session_scope() as session:
        service.record_prompt_lengths(session, lengths)
    if plan.long_prompts != service.LONG_PROMPTS_SKIP:
        return set()
    return {p for p, (_, too_long) in lengths.items() if too_long}


def _leave_out(needs: ChunkNeeds, prompt_ids: set[int]) -> ChunkNeeds:
    """The chunk's needs without prompts skipped as too long or that failed."""
    if not prompt_ids:
        return needs
    return ChunkNeeds(
        contents=needs.contents,
        need_new={p: n for p, n in needs.need_new.items() if p not in prompt_ids},
        need_prev={p: n for p, n in needs.need_prev.items() if p not in prompt_ids},
        skip=needs.skip,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:300]


class _Draws:
    """Draws for a job, prompt by prompt when a whole draw fails: the prompts that fail
    alone are remembered (and left out from then on) while the others are sampled."""

    def __init__(self, plan: SamplingPlan, batch_size: int) -> None:
        self.plan = plan
        self.batch_size = batch_size
        self.failures: dict[int, PromptFailure] = {}
        self.sampled = False

    def draw(
        self,
        backend: Any,
        tokenizer: Any,
        contents: dict[int, Any],
        missing: dict[int, int],
        *,
        seed: int,
        attempt: int,
    ) -> dict[int, list[NewSample]]:
        missing = {p: n for p, n in missing.items() if p not in self.failures}
        if not missing:
            return {}
        from worker.generation_backends import BackendUnavailable

        args = (backend, tokenizer, self.plan, contents)
        try:
            drawn = _draw(*args, missing, seed=seed, attempt=attempt, batch_size=self.batch_size)
            self.sampled = True
            return drawn
        except BackendUnavailable:
            raise  # no prompt is at fault: drawing them one by one would only wait longer
        except Exception:
            logger.exception(
                "sampling job %s: a draw of %d prompts failed; drawing them one by one",
                self.plan.job_id,
                len(missing),
            )
        from worker.training.generation import batch_seed

        drawn = {}
        for position, (prompt_id, count) in enumerate(missing.items()):
            try:
                drawn.update(
                    _draw(
                        *args,
                        {prompt_id: count},
                        seed=batch_seed(seed, 1_000_000 + position),
                        attempt=attempt,
                        batch_size=self.batch_size,
                    )
                )
                self.sampled = True
            except BackendUnavailable:
                raise
            except Exception as exc:
                logger.exception(
                    "sampling job %s: prompt %s could not be sampled", self.plan.job_id, prompt_id
                )
                self.failures[prompt_id] = PromptFailure(prompt_id, _one_line(exc))
                if not self.sampled and len(self.failures) >= SYSTEMIC_FAILURES:
                    raise  # nothing samples: the model is at fault, not the prompts
        return drawn


def _draw(
    backend: Any,
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
        backend,
        tokenizer,
        plan,
        [contents[p] for p in prompt_ids],
        n_per_prompt=max(missing.values()) * (2 if attempt else 1),
        seed=batch_seed(seed, attempt) if attempt else seed,
        batch_size=batch_size,
    )
    return dict(zip(prompt_ids, texts, strict=True))


class _EnsembleScorer:
    """The project's latest reward model and its ensemble, loaded at the first active chunk;
    `scores` is None when there is none to score with (the selection's fallback)."""

    def __init__(self, plan: SamplingPlan) -> None:
        self.plan = plan
        self.loaded: tuple[Any, Any, Any] | None = None
        self.tried = False
        self.max_length = 512
        """The reward model's training length: features are read as it was trained."""

    def _load(self) -> tuple[Any, Any, Any] | None:
        if not self.tried:
            self.tried = True
            uri = self.plan.reward_model_uri
            rm_dir = Path(get_store().local_dir(uri)) if uri is not None else None
            from worker.training.reward_ensemble import load_ensemble

            ensemble = load_ensemble(rm_dir) if rm_dir is not None else None
            if rm_dir is not None and ensemble is not None:
                from worker.training.models import load_tokenizer
                from worker.training.reward_model import META_FILE, load_reward_model

                self.loaded = (load_reward_model(rm_dir), load_tokenizer(str(rm_dir)), ensemble)
                meta = json.loads((rm_dir / META_FILE).read_text())
                self.max_length = int(meta.get("config", {}).get("max_length", self.max_length))
            else:
                logger.info(
                    "sampling job %s: no reward-model ensemble; active tasks fall back to the "
                    "leaderboard's verdict",
                    self.plan.job_id,
                )
        return self.loaded

    def scores(self, candidates: Sequence[Candidates]) -> dict[int, np.ndarray] | None:
        """{sample id: (E,) head scores} of every anchor and candidate."""
        loaded = self._load()
        if loaded is None:
            return None
        from worker.training.reward_ensemble import ensemble_scores

        rm, tokenizer, ensemble = loaded
        items = [(c.content, i, t) for c in candidates for i, t in [*c.anchors, *c.candidates]]
        matrix = ensemble_scores(
            rm,
            tokenizer,
            ensemble,
            [p for p, _, _ in items],
            [t for _, _, t in items],
            max_length=self.max_length,
        )  # (E, N)
        return {sample_id: matrix[:, n] for n, (_, sample_id, _) in enumerate(items)}


def _choose(
    plan: SamplingPlan, candidates: Sequence[Candidates], scorer: _EnsembleScorer
) -> list[TaskChoice]:
    scores = scorer.scores(candidates) if candidates else None
    choices = [
        selection.choose_task(
            c.prompt_id,
            anchors=[i for i, _ in c.anchors],
            candidates=[i for i, _ in c.candidates],
            n_new=plan.n_new,
            n_prev=plan.n_prev,
            scores=scores,
            undecided=plan.undecided,
        )
        for c in candidates
    ]
    return [c for c in choices if c is not None]


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
    draws = _Draws(plan, batch_size)
    scorer = _EnsembleScorer(plan)
    active_choices: list[TaskChoice] = []
    try:
        from worker.generation_backends import load_config

        config = load_config(plan.project_id)
        backend = _backend(plan, plan.version, config)
        tokenizer = backend.tokenizer
        budget = backend.budget(_settings(plan))
        previous: Any = None
        too_long: set[int] = set()
        ids = plan.prompt_ids
        for chunk_index, start in enumerate(range(0, len(ids), prompts_per_chunk)):
            chunk = ids[start : start + prompts_per_chunk]
            # Draw until every prompt has K distinct texts, at most RESAMPLE_TRIES times more;
            # a prompt still short then is skipped (the job's page counts it).
            for attempt in range(1 + service.RESAMPLE_TRIES):
                with session_scope(readonly=True) as session:
                    needs = service.chunk_needs(session, plan, chunk, pool=attempt == 0)
                if attempt == 0:
                    too_long |= _measure(tokenizer, plan, needs.contents, budget)
                needs = _leave_out(needs, too_long | set(draws.failures))
                if attempt and not (needs.need_new or needs.need_prev):
                    break
                new: dict[int, list[NewSample]] = {}
                if needs.need_new:
                    new = draws.draw(
                        backend,
                        tokenizer,
                        needs.contents,
                        needs.need_new,
                        seed=batch_seed(plan.seed, chunk_index),
                        attempt=attempt,
                    )
                prev: dict[int, list[NewSample]] = {}
                if needs.need_prev and plan.previous is not None:
                    previous = previous or _backend(plan, plan.previous, config)
                    prev = draws.draw(
                        previous,
                        previous.tokenizer,
                        needs.contents,
                        needs.need_prev,
                        seed=batch_seed(plan.seed + PREVIOUS_SEED_OFFSET, chunk_index),
                        attempt=attempt,
                    )
                with session_scope() as session:
                    created += service.record_chunk(
                        session, plan=plan, prompt_ids=chunk, new_samples=new, prev_samples=prev
                    )
            if plan.active_prompts.intersection(chunk):
                left_out = too_long | set(draws.failures)
                with session_scope(readonly=True) as session:
                    candidates = service.active_candidates(
                        session, plan, [p for p in chunk if p not in left_out]
                    )
                active_choices += _choose(plan, candidates, scorer)
            if progress is not None:
                progress(min(start + len(chunk), len(ids)), len(ids))
        if plan.active_prompts:
            with session_scope() as session:
                left = service.active_tasks_left(session, plan)
                kept = selection.choose_prompts(active_choices, left)
                kept_ids = {c.prompt_id for c in kept}
                passed_over = [c.prompt_id for c in active_choices if c.prompt_id not in kept_ids]
                created += service.record_chosen_tasks(
                    session, plan=plan, choices=kept, passed_over=passed_over
                )
        with session_scope() as session:
            service.finish_job(session, job_id, failures=list(draws.failures.values()))
            if created:  # the project's active judges get a run for the new tasks
                judges.note_new_tasks(session, project_id=plan.project_id)
    except Exception as exc:
        failure = describe(
            exc,
            doing=f"sampling policy version {plan.version.number}",
            lower="the project's samples per prompt or max new tokens",
            retry="the next top-up starts a new job, or run `rankloop sample`",
        )
        with session_scope() as session:
            service.fail_job(session, job_id, failure.line, detail=failure.detail)
        raise  # the whole traceback goes to the worker's log
    return created


def top_up(project_id: int) -> int | None:
    """Start a sampling job when the project is below its minimum of open tasks (the job runs
    as its own message); the id of the job started, or None."""
    with session_scope() as session:
        job = service.top_up_if_needed(session, project_id=project_id)
        return job.id if job is not None else None
