"""Round stages, each a plain function a Celery task calls: reward model → policy → evaluating
→ sampling, or the stages its round type declares (`app.rounds.registry`). Each reads what it
needs in a short transaction, trains without one, and writes its result in one transaction, so
a crash leaves the round failed (by the reaper) or resumable, never half-registered. The policy
stage calls the trainer the round type names (`worker.jobs.round_trainers`).
"""

from __future__ import annotations

import importlib
import math
import shutil
import statistics
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.artifacts import get_store
from app.config import get_settings
from app.db import session_scope
from app.models import TrainingRound
from app.rounds import gate as promotion
from app.rounds import lineage, registry, service
from app.rounds.schemas import RoundConfigBase
from app.rounds.service import StageStart, Throttle
from app.sampling import service as sampling
from worker.failures import Failure, RoundCancelled, describe
from worker.jobs.reward_model import json_safe as _json_safe
from worker.policies import load_base
from worker.training.outcomes import TrainingCancelled
from worker.training.prompts import FittedPrompt, PromptCuts

T = TypeVar("T")


class StageReporter:
    """Progress, heartbeat and cancellation for a stage, throttled for tight loops."""

    def __init__(self, round_id: int, *, every_seconds: float = 2.0) -> None:
        self.round_id = round_id
        self._throttle = Throttle(every_seconds)
        self.cancelled = False

    def progress(
        self,
        step: int,
        total: int | None,
        metrics: dict[str, float] | None = None,
        *,
        series: str | None = None,
        force: bool = False,
    ) -> None:
        if not (force or series or self._throttle.ready()):
            return
        with session_scope() as session:
            self.cancelled = service.record_progress(
                session, self.round_id, step=step, total=total, metrics=metrics, series=series
            )

    def should_stop(self) -> bool:
        return self.cancelled

    def check_cancel(self) -> None:
        if self.cancelled:
            raise RoundCancelled


def run_stage(round_id: int, stage: str) -> str | None:
    """Run one stage; returns the next stage to enqueue (None when the round has ended)."""
    with session_scope() as session:
        start = service.begin_stage(session, round_id, stage)
    if start is None:
        return None
    reporter = StageReporter(round_id)
    try:
        STAGES[stage](start, reporter)
        reporter.check_cancel()
    except (RoundCancelled, TrainingCancelled):  # the stage or its trainer saw the cancel
        with session_scope() as session:
            service.mark_cancelled(session, round_id)
        return None
    except Exception as exc:  # any other error fails the round, even after a cancel
        failure = describe_failure(exc, stage=stage, round_type=start.type)
        with session_scope() as session:
            service.fail_round(session, round_id, failure.line, detail=failure.detail)
        raise  # the whole traceback goes to the worker's log
    with session_scope() as session:
        return service.complete_stage(session, round_id, stage)


def describe_failure(exc: BaseException, *, stage: str, round_type: str) -> Failure:
    """The failure in the words of the stage its round type declares: what it was doing and
    which settings take less memory there."""
    spec = registry.find(round_type)
    declared = spec.stage(stage) if spec is not None else None
    return describe(
        exc,
        doing=declared.doing if declared else f"running stage {stage!r}",
        lower=declared.lower if declared else "the batch size",
        retry="start a new round",
    )


def run_round(round_id: int, first_stage: str) -> None:
    """All stages in this process (CLI, tests, the embedded demo loop)."""
    stage: str | None = first_stage
    while stage is not None:
        stage = run_stage(round_id, stage)


# Reward model ------------------------------------------------------------------------------


def reward_model_stage(start: StageStart, reporter: StageReporter) -> None:
    """Train the round's reward model and a second one on another held-out split and seed:
    the gate scores with the second (the policy never optimises against it, so gaming the
    first does not pass the gate), and the two held-out sets together say whether the
    rankings hold a signal at all. Without one the round ends needs_more_data."""
    from app.rounds.judge_data import judge_overrides
    from worker.jobs.reward_model import register_run, train_project_reward_model

    if start.config.get("reward_judge_id") is not None:  # a judge is the reward: nothing to train
        from worker.jobs.judge_reward import skip_reward_model

        skip_reward_model(start, start.config["reward_judge_id"])
        return
    settings, seed = start.config["reward_model"], start.config["seed"]
    common: dict[str, Any] = {
        "reference": start.config["reference"],
        "should_stop": reporter.should_stop,
        "register": False,
    }
    run = train_project_reward_model(
        start.project_id,
        settings,
        seed=seed,
        name=f"round {start.number} reward model",
        round_id=start.round_id,
        progress=lambda step, total: reporter.progress(step, total),
        artifact_name=f"round-{start.number}",
        **judge_overrides(start.config),
        **common,
    )
    reporter.check_cancel()
    for epoch in run.summary["epochs"]:
        reporter.progress(
            int(epoch.get("epoch", 0)),
            settings["epochs"],
            {k: float(v) for k, v in epoch.items() if isinstance(v, int | float)},
            series="reward_model",
        )
    judge = train_project_reward_model(
        start.project_id,
        settings,
        seed=(seed + 7919) % 2**31,
        artifact_name=f"round-{start.number}-gate",
        snapshot_id=run.snapshot_id,
        **common,
    )
    reporter.check_cancel()
    assert judge is not None
    signal = pooled_signal(run.summary, judge.summary)
    shortfall = signal_shortfall(signal, start.config["min_accuracy_low"])
    with session_scope() as session:
        service.set_summary(session, start.round_id, "signal", signal)
        if shortfall is not None:
            service.set_summary(session, start.round_id, "reward_model_summary", run.summary)
            service.end_needs_more_data(session, start.round_id, shortfall)
            return
        service.set_summary(
            session,
            start.round_id,
            "gate_reward_model",
            {
                "artifact_uri": judge.artifact_uri,
                "base_model": judge.base_model,
                "heldout_accuracy": judge.summary["heldout_accuracy"],
                "best_epoch": judge.summary["best_epoch"],
            },
        )
    register_run(start.project_id, run, round_id=start.round_id)


SIGNAL_CONFIDENCE = 0.9
"""Two-sided level of the held-out accuracy interval whose low end must clear the bound:
0.9 makes it a one-sided 95% test of "better than chance", the question being asked."""


def pooled_signal(*summaries: dict[str, Any]) -> dict[str, Any]:
    """Held-out pair accuracy of the reward models, their held-out rankings pooled, with its
    interval (rankings resampled). Each model is measured on prompts it never saw."""
    from worker.training.reward_model import accuracy_interval

    counts = [c for s in summaries for c in s.get("heldout_ranking_counts") or []]
    right, pairs = sum(c for c, _ in counts), sum(n for _, n in counts)
    low, high = accuracy_interval(counts, confidence=SIGNAL_CONFIDENCE)
    return {
        "accuracy": right / pairs if pairs else None,
        "low": low if counts else None,
        "high": high if counts else None,
        "confidence": SIGNAL_CONFIDENCE,
        "heldout_rankings": len(counts),
        "rankings": max(
            int(s.get("n_train") or 0) + int(s.get("n_heldout") or 0) for s in summaries
        ),
    }


def signal_shortfall(signal: dict[str, Any], min_low: float) -> str | None:
    """Why the held-out accuracy is no evidence of a learnable preference, and roughly how
    many more rankings would make it so; None when its interval's low end clears `min_low`.

    The interval's half-width shrinks as 1/√n, so n rankings that measured accuracy a with
    half-width w need about n·(w / (a − min_low))² to put the interval above `min_low`.
    """
    accuracy, low, high = signal.get("accuracy"), signal.get("low"), signal.get("high")
    if min_low <= 0 or (accuracy is not None and low is not None and low > min_low):
        return None
    total = int(signal.get("rankings") or 0)
    if accuracy is None or low is None or high is None:
        figures = f"it had no held-out rankings to measure on ({total} rankings in all)"
        more = f"at least {max(total, 20)} more"
    else:
        figures = (
            f"held-out pair accuracy {accuracy:.3f}, interval [{low:.3f}, {high:.3f}] at "
            f"{signal.get('confidence', 0.9):.0%} on {signal.get('heldout_rankings')} held-out "
            f"rankings, needed above {min_low}"
        )
        margin, half = accuracy - min_low, (high - low) / 2
        if margin <= 0:
            more = (
                f"at least {total} more (twice as many), or check on the leaderboard that "
                "annotators agree with one another"
            )
        else:
            needed = math.ceil(total * (half / margin) ** 2)
            more = f"about {max(needed - total, 1)} more"
    return (
        "Needs more data: the reward model cannot yet tell the rankings apart better than "
        f"chance ({figures}). Nothing was trained on it. Rank {more} tasks, then start a new "
        "round."
    )


def round_reward_model(round_id: int, *, judge: bool = False) -> tuple[str, Path] | None:
    """(base model name, local directory) of the reward model a round uses, if any; with
    `judge`, the held-out one its gate scores with (when the round trained one)."""
    from app.rounds import repository

    with session_scope(readonly=True) as session:
        if judge:
            training_round = session.get(TrainingRound, round_id)
            assert training_round is not None
            held_out = training_round.metrics.get("gate_reward_model")
            if held_out:
                uri = held_out["artifact_uri"]
                return held_out["base_model"], Path(get_store().local_dir(uri))
        rm_version = repository.reward_model_for_round(session, round_id)
        if rm_version is None:
            training_round = session.get(TrainingRound, round_id)
            assert training_round is not None
            rm_version = repository.latest_reward_model(session, training_round.project_id)
        if rm_version is None:
            return None
        base_model, uri = rm_version.base_model, rm_version.artifact_uri
    return base_model, Path(get_store().local_dir(uri))


def load_reward_model_dir(rm_dir: Path) -> tuple[Any, Any]:
    """(reward model on its own copy of its base, its tokenizer)."""
    from worker.training.models import load_tokenizer
    from worker.training.reward_model import load_reward_model

    return load_reward_model(rm_dir), load_tokenizer(str(rm_dir))


def scorer(rm: Any, rm_tokenizer: Any) -> Callable[[list[Any], list[str]], list[float]]:
    from worker.training.reward_model import score

    def score_fn(prompts: list[Any], responses: list[str]) -> list[float]:
        return score(rm, rm_tokenizer, prompts, responses)

    return score_fn


# Policy: the round type's trainer ------------------------------------------------------------


@dataclass(frozen=True)
class PolicyJob:
    """What a round type's trainer gets: the round, its typed config, the loaded base (with
    the reference merged in), the training prompts and where training starts and saves."""

    start: StageStart
    config: RoundConfigBase
    reporter: StageReporter
    model: Any
    tokenizer: Any
    prompts: list[Any]
    init_dir: Path | None
    """The adapter training continues, or None for a fresh one."""
    out_dir: Path
    """Where the trainer saves the adapter (returned as the summary's "adapter_dir")."""
    source: lineage.PolicySource

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        """A trainer's progress callback: a point on the round's "policy" chart."""
        self.reporter.progress(step, total, metrics, series="policy")

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


def _source_and_prompts(
    session: Session, start: StageStart, config: RoundConfigBase
) -> tuple[lineage.PolicySource, list[Any], list[Any]]:
    """Where the round's policy training starts, and its training and held-out prompts (the
    same split in every stage: the round's seed decides it)."""
    source = lineage.policy_source(
        session, project_id=start.project_id, reference=config.reference, round_type=start.type
    )
    train_prompts, eval_prompts = lineage.split_prompts(
        session,
        project_id=start.project_id,
        eval_count=sized(config.eval_prompts),
        seed=sized(config.seed),
    )
    return source, train_prompts, eval_prompts


def distributed_trainer(path: str) -> Callable[[PolicyJob], dict[str, Any]] | None:
    """The multi-process form of the trainer `path` names, if its module declares one
    (`DISTRIBUTED_TRAINERS`, by function name; PolicyJob.model is then None)."""
    module, _, name = path.partition(":")
    found: dict[str, Callable[[PolicyJob], dict[str, Any]]] = getattr(
        importlib.import_module(module), "DISTRIBUTED_TRAINERS", {}
    )
    return found.get(name)


def resolve_trainer(path: str) -> Callable[[PolicyJob], dict[str, Any]]:
    """The function a round type names as "module:function" (the web app never imports it)."""
    module, _, name = path.partition(":")
    trainer: Callable[[PolicyJob], dict[str, Any]] = getattr(importlib.import_module(module), name)
    return trainer


def policy_stage(start: StageStart, reporter: StageReporter) -> None:
    spec = registry.get(start.type)
    config = spec.parse(start.config)
    with session_scope(readonly=True) as session:
        source, train_prompts, _ = _source_and_prompts(session, start, config)
    trainer = resolve_trainer(spec.trainer)
    # RANKLOOP_TRAIN_PROCS > 1: a trainer with a distributed form runs as that many processes,
    # each loading the base itself (none is loaded here).
    distributed = distributed_trainer(spec.trainer) if get_settings().train_procs > 1 else None
    workdir = Path(tempfile.mkdtemp(prefix="rankloop-policy-"))
    try:
        model, tokenizer = (None, None) if distributed is not None else load_base(
            source.base_model,
            source.reference_merged,
            trust_remote_code=source.trust_remote_code,
        )  # fmt: skip
        init_dir = (
            get_store().local_dir(source.init_adapter_uri) if source.init_adapter_uri else None
        )
        summary = (distributed or trainer)(
            PolicyJob(
                start=start,
                config=config,
                reporter=reporter,
                out_dir=workdir / "adapter",
                model=model,
                tokenizer=tokenizer,
                prompts=train_prompts,
                init_dir=init_dir,
                source=source,
            )
        )
        reporter.check_cancel()
        adapter_dir = Path(summary.pop("adapter_dir"))
        uri = get_store().put_dir(
            adapter_dir, f"projects/{start.project_id}/rounds/{start.number}/adapter"
        )
        with session_scope() as session:
            service.set_summary(
                session,
                start.round_id,
                "candidate",
                _json_safe(
                    {
                        "adapter_uri": uri,
                        "base_model": source.base_model,
                        "merged": list(source.reference_merged),
                        "continued_from": source.init_adapter_uri,
                        **summary,
                    }
                ),
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# Evaluating: the promotion gate --------------------------------------------------------------


def evaluation_stage(start: StageStart, reporter: StageReporter) -> None:
    """Sample the candidate and the previous version on held-out prompts, measure KL and the
    held-out scorer's gain with its interval, decide (`app.rounds.gate.decide`), register."""
    from app.models import Project

    spec = registry.get(start.type)
    config = spec.parse(start.config)
    with session_scope(readonly=True) as session:
        training_round = session.get(TrainingRound, start.round_id)
        project = session.get(Project, start.project_id)
        assert training_round is not None
        assert project is not None
        candidate = dict(training_round.metrics.get("candidate") or {})
        source, _, eval_prompts = _source_and_prompts(session, start, config)
        # The rollout settings the policy trained with (PPO), or else the project's.
        temperature, max_new = config.sampling()
        sampling = GateSampling(
            temperature=temperature or project.temperature,
            max_new_tokens=max_new or project.max_new_tokens,
            stop_strings=project.stop_strings,
            seed=sized(config.seed) + 1,
            backend=gate_backend(project.generation_backend),
        )
    if not candidate.get("adapter_uri"):
        raise ValueError("The policy stage registered no candidate adapter")
    n = config.gate_samples or 1
    gate_prompts = promotion.repeat_prompts(eval_prompts, n)

    # Measure: both versions' samples of the held-out prompts, the candidate's KL
    new_samples, kl = _sample_candidate(candidate, source, gate_prompts, sampling)
    reporter.progress(1, 3, force=True)
    old_samples = _sample_previous(source, gate_prompts, sampling)
    reporter.progress(2, 3, force=True)
    new_texts, old_texts = [s.text for s in new_samples], [s.text for s in old_samples]

    # The gate's figures (pure arithmetic on what was measured), then the scores
    gate = promotion.sample_figures(
        kl=kl,
        new_texts=new_texts,
        old_texts=old_texts,
        new_lengths=[len(s.token_ids) for s in new_samples],
        max_kl=config.max_kl,
        samples_per_prompt=n,
    )
    gate.update(gate_prompt_cuts(gate_prompts, new_samples))
    reward_judge_id = start.config.get("reward_judge_id")
    judge = None if reward_judge_id is not None else round_reward_model(start.round_id, judge=True)
    trained_on = round_reward_model(start.round_id)
    if reward_judge_id is not None:  # the judge that was the reward scores the gate too
        from worker.jobs.judge_reward import round_judge
        from worker.training.judge_reward import versus

        reward_judge, named = round_judge(reward_judge_id, start.project_id)
        new_scores, old_scores = versus(
            reward_judge, gate_prompts, new_texts, old_texts, samples_per_prompt=n
        )
        gate.update(
            score_figures(
                new_scores,
                old_scores,
                new_texts,
                samples_per_prompt=n,
                confidence=config.gate_confidence,
                seed=sampling.seed,
            ),
            scorer=f"judge {named['name']!r} (the round's reward)",
            min_score_gain=config.min_score_gain,
        )
        del reward_judge
    elif judge is not None:
        judge_fn = scorer(*load_reward_model_dir(judge[1]))
        trained_fn = (
            scorer(*load_reward_model_dir(trained_on[1]))
            if spec.trains_against_reward_model and trained_on is not None and trained_on != judge
            else None
        )
        gate.update(
            score_candidate(
                gate_prompts,
                new_texts,
                old_texts,
                judge=judge_fn,
                trained_on=trained_fn,
                samples_per_prompt=n,
                confidence=config.gate_confidence,
                seed=sampling.seed,
            ),
            scorer="held-out reward model" if judge != trained_on else "the round's reward model",
            min_score_gain=config.min_score_gain,
        )
        del judge_fn, trained_fn
    if spec.gate_figures is not None:
        gate.update(spec.gate_figures(config, candidate))

    # Decide (a pure function of the figures and the config), record
    passed, reasons = promotion.decide(gate, start.config)
    gate["passed"] = passed
    reporter.progress(3, 3, force=True)
    _register_candidate(start, candidate, gate, reasons)


def gate_prompt_cuts(prompts: list[Any], samples: list[Any]) -> dict[str, int]:
    """The distinct held-out prompts the gate's generation shortened to fit (its samples'
    `prompt_dropped`, `prompt_truncated`), counted as every stage counts them."""
    cuts = PromptCuts()
    for prompt, sample in zip(prompts, samples, strict=True):
        fitted = FittedPrompt(
            sample.prompt_ids or [], sample.prompt_dropped, sample.prompt_truncated
        )
        cuts.note(prompt, fitted)
    return cuts.figures()


@dataclass(frozen=True)
class GateSampling:
    """How the gate samples both versions: the same settings and seed for each."""

    temperature: float
    max_new_tokens: int
    stop_strings: list[str] | None
    seed: int
    backend: str = "hf"
    """The engine both versions are sampled with (`gate_backend`)."""


def gate_backend(project_backend: str) -> str:
    """The gate samples both versions with one engine, so their scores compare. 'vllm' does
    in-process (the candidate's adapter hot-loaded from its directory); 'openai' gates on
    'hf': the unregistered candidate is not on the server, and its KL needs the exact token
    ids of its own samples, which a server's text does not give."""
    return "vllm" if project_backend == "vllm" else "hf"


def _vllm_ref(version_id: int, base_model: str, merged: tuple[str, ...], trust: bool) -> Any:
    from worker.generation_backends import VersionRef

    # In-process, vLLM keys adapters by id; the name (number) is only a label.
    return VersionRef(
        id=version_id,
        number=0,
        base_model=base_model,
        merged_adapter_uris=merged,
        trust_remote_code=trust,
    )


def _sample_candidate(
    candidate: dict[str, Any],
    source: lineage.PolicySource,
    prompts: list[Any],
    sampling: GateSampling,
) -> tuple[list[Any], float]:
    """The candidate's samples of `prompts` and its mean KL to the reference on them."""
    from peft import PeftModel

    from worker.training.evaluation import mean_kl_to_reference

    model, tokenizer = load_base(
        candidate["base_model"],
        tuple(candidate["merged"]),
        trust_remote_code=source.trust_remote_code,
    )
    peft_model = PeftModel.from_pretrained(
        model, str(get_store().local_dir(candidate["adapter_uri"]))
    )
    peft_model.eval()
    backend: Any
    if sampling.backend == "vllm":
        from worker.generation_backends.vllm import VLLMBackend

        uri = candidate["adapter_uri"]
        lora_id = 2**30 + zlib.crc32(uri.encode()) % 2**30  # apart from versions' ids
        ref = _vllm_ref(
            lora_id, candidate["base_model"], tuple(candidate["merged"]), source.trust_remote_code
        )
        backend = VLLMBackend(ref)
        backend.use(ref, adapter_dir=str(get_store().local_dir(uri)))
    else:
        from worker.generation_backends.hf import HFBackend

        backend = HFBackend(peft_model, tokenizer)
    samples = _sample(backend, prompts, sampling)
    kl = mean_kl_to_reference(
        peft_model, tokenizer, prompts, samples, temperature=sampling.temperature
    )
    return samples, kl


def _sample_previous(
    source: lineage.PolicySource, prompts: list[Any], sampling: GateSampling
) -> list[Any]:
    """The current version's samples of `prompts` (one model in memory at a time: the reward
    models come next)."""
    from worker.generation_backends.hf import HFBackend
    from worker.policies import PolicySpec, load_policy_for_generation

    if sampling.backend == "vllm":
        from dataclasses import replace

        from worker.generation_backends.vllm import VLLMBackend

        ref = _vllm_ref(
            source.current_version_id,
            source.base_model,
            source.current_merged,
            source.trust_remote_code,
        )
        return _sample(
            VLLMBackend(replace(ref, adapter_uri=source.current_adapter_uri)), prompts, sampling
        )
    model, tokenizer = load_policy_for_generation(
        PolicySpec(
            version_id=source.current_version_id,
            base_model=source.base_model,
            adapter_uri=source.current_adapter_uri,
            merged_adapter_uris=source.current_merged,
            trust_remote_code=source.trust_remote_code,
        )
    )
    return _sample(HFBackend(model, tokenizer), prompts, sampling)


def _sample(backend: Any, prompts: list[Any], sampling: GateSampling) -> list[Any]:
    """One pure sample per prompt (`evaluation.sample_once`'s settings, batches and seeds)."""
    from worker.generation_backends import generate_samples
    from worker.training.generation import GenerationSettings

    settings = GenerationSettings(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=1.0,
        top_k=0,
        stop_strings=sampling.stop_strings,
    )
    generated = generate_samples(
        backend, list(prompts), n_per_prompt=1, settings=settings, seed=sampling.seed, batch_size=16
    )
    return [g[0] for g in generated]


def _register_candidate(
    start: StageStart, candidate: dict[str, Any], gate: dict[str, Any], reasons: list[str]
) -> None:
    """Register the candidate as a policy version (promoted when it passed), in one
    transaction; a round cancelled (or reaped) while the gate ran registers nothing."""
    with session_scope() as session:
        training_round = service.claim_registration(session, start.round_id)
        if training_round is None:
            raise RoundCancelled
        version = lineage.register_policy_version(
            session,
            training_round=training_round,
            base_model=candidate["base_model"],
            artifact_uri=candidate["adapter_uri"],
            merged=tuple(candidate["merged"]),
            metrics=_json_safe(
                {
                    "gate": gate,
                    "round_type": start.type,
                    # a judge as the reward: which one, and its prompt version
                    **{k: v for k, v in candidate.items() if k == "reward_judge"},
                }
            ),
            promote=gate["passed"],
        )
        service.set_summary(
            session, start.round_id, "gate", _json_safe({**gate, "version": version.number})
        )
        if not gate["passed"]:
            service.reject_round(
                session,
                start.round_id,
                "The new version did not pass the promotion gate: " + "; ".join(reasons),
            )


def sized(value: T | None) -> T:
    """A setting a round left blank: filled in when it started (`app.rounds.sizing`, the seed
    from the round's id), so never None on a stored round."""
    assert value is not None
    return value


def score_candidate(
    prompts: list[Any],
    new_texts: list[str],
    old_texts: list[str],
    *,
    judge: Callable[[list[Any], list[str]], list[float]],
    trained_on: Callable[[list[Any], list[str]], list[float]] | None,
    samples_per_prompt: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """The gate's score figures: the judge's gain (new − previous, per prompt) with its
    paired bootstrap interval, the judge's score-length correlation on the new samples, and,
    beside them, the gain the reward model PPO optimised would report (`trained_on`): a gain
    there that the judge does not see is over-optimisation showing, and does not count."""
    figures = score_figures(
        judge(prompts, new_texts),
        judge(prompts, old_texts),
        new_texts,
        samples_per_prompt=samples_per_prompt,
        confidence=confidence,
        seed=seed,
    )
    if trained_on is not None:
        figures["training_rm_gain"] = statistics.fmean(
            trained_on(prompts, new_texts)
        ) - statistics.fmean(trained_on(prompts, old_texts))
    return figures


def score_figures(
    from_evaluation: list[float],
    from_previous: list[float],
    new_texts: list[str],
    *,
    samples_per_prompt: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """The gate's score figures from the scorer's scores of the new and the previous
    version's answers (each prompt's `samples_per_prompt` side by side)."""
    from worker.training.evaluation import length_correlation, paired_bootstrap_interval

    new_scores = _per_prompt_means(from_evaluation, samples_per_prompt)
    old_scores = _per_prompt_means(from_previous, samples_per_prompt)
    low, high = paired_bootstrap_interval(old_scores, new_scores, seed=seed, confidence=confidence)
    return {
        "new_score": statistics.fmean(new_scores),
        "previous_score": statistics.fmean(old_scores),
        "score_gain": statistics.fmean(new_scores) - statistics.fmean(old_scores),
        "score_gain_low": low,
        "score_gain_high": high,
        "confidence": confidence,
        "length_correlation": length_correlation(from_evaluation, new_texts),
    }


def _per_prompt_means(scores: list[float], n: int) -> list[float]:
    """Mean of each consecutive run of n scores (the n samples of one prompt)."""
    return [statistics.fmean(scores[i : i + n]) for i in range(0, len(scores), n)]


# Sampling: back into the queue -------------------------------------------------------------


def sampling_stage(start: StageStart, reporter: StageReporter) -> None:
    from worker.jobs.sampling import run_sampling_job

    with session_scope() as session:
        job = sampling.start_sampling(
            session,
            project_id=start.project_id,
            round_id=start.round_id,
            enqueue=False,
            seed=start.config["seed"],
        )
        job_id = job.id if job is not None else None
    if job_id is not None:
        run_sampling_job(
            job_id, progress=lambda done, total: reporter.progress(done, total, force=True)
        )


STAGES: dict[str, Callable[[StageStart, StageReporter], None]] = {
    "reward_model": reward_model_stage,
    "policy": policy_stage,
    "evaluating": evaluation_stage,
    "sampling": sampling_stage,
}
