"""Round stages, each a plain function a Celery task calls: reward model → policy → evaluating
→ sampling. Each reads what it needs in a short transaction, trains without one, and writes
its result in one transaction, so a crash leaves the round failed (by the reaper) or resumable,
never half-registered.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.artifacts import get_store
from app.db import session_scope
from app.models import TrainingRound
from app.rounds import lineage, service, snapshots
from app.rounds.service import StageStart, Throttle
from app.sampling import service as sampling
from worker.failures import Failure, describe
from worker.jobs.reward_model import json_safe as _json_safe
from worker.policies import load_base


class RoundCancelled(Exception):
    """The admin cancelled the round; the stage stops between steps."""


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
    except RoundCancelled:
        with session_scope() as session:
            service.mark_cancelled(session, round_id)
        return None
    except Exception as exc:
        if reporter.cancelled:  # the trainer stopped because we asked it to
            with session_scope() as session:
                service.mark_cancelled(session, round_id)
            return None
        failure = describe_failure(exc, stage=stage, round_type=start.type)
        with session_scope() as session:
            service.fail_round(session, round_id, failure.line, detail=failure.detail)
        raise  # the whole traceback goes to the worker's log
    with session_scope() as session:
        return service.complete_stage(session, round_id, stage)


# What each stage does, in the words of a failed round's one-line reason, and which settings
# take less memory there (by stage, or "policy:<round type>").
STAGE_DOING = {
    "reward_model": "training the reward model",
    "policy:reward_ppo": "training the policy with PPO",
    "policy:sft": "training the policy with SFT",
    "policy:dpo": "training the policy with DPO",
    "evaluating": "evaluating the new version (the promotion gate)",
    "sampling": "sampling the new version for annotators",
}
STAGE_LOWER = {
    "reward_model": "reward_model.max_length (or choose a smaller reward_model.base_model)",
    "policy:reward_ppo": "ppo.mini_batch_size and ppo.batch_size (or ppo.max_new_tokens)",
    "policy:sft": "batch_size",
    "policy:dpo": "batch_size",
    "evaluating": "gate_samples or eval_prompts",
    "sampling": "the project's samples per prompt or max new tokens",
}


def describe_failure(exc: BaseException, *, stage: str, round_type: str) -> Failure:
    key = f"policy:{round_type}" if stage == "policy" else stage
    return describe(
        exc,
        doing=STAGE_DOING.get(key, f"running stage {stage!r}"),
        lower=STAGE_LOWER.get(key, "the batch size"),
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
    from worker.jobs.reward_model import register_run, train_project_reward_model

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
        **common,
    )
    reporter.check_cancel()
    assert run is not None  # None only when should_stop (the cancel flag) ended training
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


def _round_reward_model(round_id: int, *, judge: bool = False) -> tuple[str, Path] | None:
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


def _load_reward_model(rm_dir: Path) -> tuple[Any, Any]:
    """(reward model on its own copy of its base, its tokenizer)."""
    from worker.training.models import load_tokenizer
    from worker.training.reward_model import load_reward_model

    return load_reward_model(rm_dir), load_tokenizer(str(rm_dir))


def _score_fn(rm: Any, rm_tokenizer: Any) -> Callable[[list[Any], list[str]], list[float]]:
    from worker.training.reward_model import score

    def score_fn(prompts: list[Any], responses: list[str]) -> list[float]:
        return score(rm, rm_tokenizer, prompts, responses)

    return score_fn


def _stop_strings(project_id: int) -> list[str] | None:
    """The project's stop strings: rollouts and the gate's samples end where annotators' do."""
    from app.models import Project

    with session_scope(readonly=True) as session:
        project = session.get(Project, project_id)
        assert project is not None
        return project.stop_strings


# Policy (PPO / SFT / DPO) ------------------------------------------------------------------


def policy_stage(start: StageStart, reporter: StageReporter) -> None:
    with session_scope(readonly=True) as session:
        source = lineage.policy_source(
            session,
            project_id=start.project_id,
            reference=start.config["reference"],
            round_type=start.type,
        )
        train_prompts, _ = lineage.split_prompts(
            session,
            project_id=start.project_id,
            eval_count=start.config["eval_prompts"],
            seed=start.config["seed"],
        )
    trainer = POLICY_TRAINERS[start.type]
    workdir = Path(tempfile.mkdtemp(prefix="rankloop-policy-"))
    try:
        model, tokenizer = load_base(
            source.base_model,
            source.reference_merged,
            trust_remote_code=source.trust_remote_code,
        )
        init_dir = (
            get_store().local_dir(source.init_adapter_uri) if source.init_adapter_uri else None
        )
        summary = trainer(
            start, reporter, model, tokenizer, train_prompts, init_dir, workdir, source=source
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


def ppo_trainer(
    start: StageStart,
    reporter: StageReporter,
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    init_dir: Path | None,
    workdir: Path,
    *,
    source: lineage.PolicySource,
) -> dict[str, Any]:
    from worker.training.ppo import PPOConfig, ScoreFn, SharedBaseReward, train_ppo

    found = _round_reward_model(start.round_id)
    if found is None:
        raise ValueError("PPO needs a reward model; this round trained none")
    rm_base, rm_dir = found
    # A reward model trained on the very weights PPO starts from (same base, nothing merged)
    # is loaded onto them as a second adapter: one base copy in memory instead of two.
    on_policy_base = rm_base == source.base_model and not source.reference_merged
    reward: ScoreFn | SharedBaseReward
    if on_policy_base:
        reward = SharedBaseReward(rm_dir)
    else:
        reward = _score_fn(*_load_reward_model(rm_dir))
    cfg = start.config["ppo"]
    config = PPOConfig(
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        mini_batch_size=cfg["mini_batch_size"],
        ppo_epochs=cfg["ppo_epochs"],
        lr=cfg["learning_rate"],
        kl_coef=cfg["kl_coef"],
        adaptive_kl=cfg["adaptive_kl"],
        temperature=cfg["temperature"],
        max_new_tokens=cfg["max_new_tokens"],
        stop_strings=_stop_strings(start.project_id),
        seed=start.config["seed"],
    )

    def progress(step: int, total: int, metrics: dict[str, float]) -> None:
        reporter.progress(step, total, metrics, series="policy")

    result = train_ppo(
        model,
        tokenizer,
        prompts,
        reward,
        config,
        init_adapter_dir=init_dir,
        out_dir=workdir / "adapter",
        progress=progress,
        should_stop=reporter.should_stop,
    )
    return {
        "ppo": result.final,
        "ppo_config": asdict(config),
        "reward_model_on_policy_base": on_policy_base,
        "adapter_dir": str(result.adapter_dir),
    }


def sft_trainer(
    start: StageStart,
    reporter: StageReporter,
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    init_dir: Path | None,
    workdir: Path,
    *,
    source: lineage.PolicySource,
) -> dict[str, Any]:
    from worker.training.sft import Demonstration, SFTConfig, train_sft

    with session_scope(readonly=True) as session:
        demos = [
            Demonstration(prompt, response)
            for prompt, response in lineage.demonstrations(session, project_id=start.project_id)
        ]
    if len(demos) < 4:
        raise ValueError(
            f"SFT needs demonstrations: the project has {len(demos)} (at least 4 needed); "
            "import some on the project page"
        )
    cfg = start.config
    config = SFTConfig(
        epochs=cfg["epochs"],
        lr=cfg["learning_rate"],
        batch_size=cfg["batch_size"],
        heldout_fraction=cfg["heldout_fraction"],
        seed=cfg["seed"],
    )
    result = train_sft(
        model,
        tokenizer,
        demos,
        config,
        out_dir=workdir / "adapter",
        init_adapter_dir=init_dir,
        progress=lambda step, total, metrics: reporter.progress(
            step, total, metrics, series="policy"
        ),
        should_stop=reporter.should_stop,
    )
    return {"sft": result.final, "adapter_dir": str(result.adapter_dir)}


def dpo_trainer(
    start: StageStart,
    reporter: StageReporter,
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    init_dir: Path | None,
    workdir: Path,
    *,
    source: lineage.PolicySource,
) -> dict[str, Any]:
    from worker.training.dpo import DPOConfig, PreferencePair, train_dpo

    with session_scope() as session:
        snapshot = snapshots.create_snapshot(
            session, project_id=start.project_id, name=f"round {start.number} dpo"
        )
        training_round = session.get(TrainingRound, start.round_id)
        assert training_round is not None
        training_round.snapshot_id = snapshot.id
        rows = snapshots.preference_pairs(session, snapshot.id)
        # Two samples with the same text (a duplicate generation) ranked apart state no
        # preference a policy could learn: DPO skips them; the snapshot keeps them on record.
        pairs = [
            PreferencePair(prompt, chosen, rejected)
            for prompt, chosen, rejected in rows
            if chosen != rejected
        ]
    if len(pairs) < 4:
        raise ValueError(
            f"DPO needs preference pairs: the snapshot has {len(pairs)} (at least 4 needed)"
        )
    cfg = start.config
    config = DPOConfig(
        beta=cfg["beta"],
        loss_type=cfg["loss"],
        epochs=cfg["epochs"],
        lr=cfg["learning_rate"],
        batch_size=cfg["batch_size"],
        heldout_fraction=cfg["heldout_fraction"],
        seed=cfg["seed"],
    )
    result = train_dpo(
        model,
        tokenizer,
        pairs,
        config,
        out_dir=workdir / "adapter",
        init_adapter_dir=init_dir,
        progress=lambda step, total, metrics: reporter.progress(
            step, total, metrics, series="policy"
        ),
        should_stop=reporter.should_stop,
    )
    return {
        "dpo": result.final,
        "n_pairs": len(pairs),
        "identical_pairs_skipped": len(rows) - len(pairs),
        "adapter_dir": str(result.adapter_dir),
    }


# Each trainer gets the loaded base and where training starts (`source`); it returns the
# summary, with the trained adapter's directory under "adapter_dir".
POLICY_TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {
    "reward_ppo": ppo_trainer,
    "sft": sft_trainer,
    "dpo": dpo_trainer,
}


# Evaluating: the promotion gate --------------------------------------------------------------


def evaluation_stage(start: StageStart, reporter: StageReporter) -> None:
    """Sample the candidate and the previous version on held-out prompts, measure KL and the
    held-out scorer's gain with its interval, decide (`app.rounds.gate.decide`), register."""
    from peft import PeftModel

    from app.models import Project
    from app.rounds import gate as promotion
    from worker.policies import PolicySpec, load_policy_for_generation
    from worker.training.evaluation import mean_kl_to_reference, sample_once

    with session_scope(readonly=True) as session:
        training_round = session.get(TrainingRound, start.round_id)
        project = session.get(Project, start.project_id)
        assert training_round is not None
        assert project is not None
        candidate = dict(training_round.metrics.get("candidate") or {})
        source = lineage.policy_source(
            session,
            project_id=start.project_id,
            reference=start.config["reference"],
            round_type=start.type,
        )
        _, eval_prompts = lineage.split_prompts(
            session,
            project_id=start.project_id,
            eval_count=start.config["eval_prompts"],
            seed=start.config["seed"],
        )
        # Rollout settings for PPO; the project's sampling settings for other round types.
        ppo = start.config.get("ppo") or {}
        temperature = ppo.get("temperature") or project.temperature
        max_new = ppo.get("max_new_tokens") or project.max_new_tokens
        stop_strings = project.stop_strings
    if not candidate.get("adapter_uri"):
        raise ValueError("The policy stage registered no candidate adapter")
    seed = start.config["seed"] + 1
    # n samples of each held-out prompt, prompt by prompt: [p0, p0, .., p1, p1, ..].
    n = start.config.get("gate_samples") or 1
    gate_prompts = [prompt for prompt in eval_prompts for _ in range(n)]

    model, tokenizer = load_base(
        candidate["base_model"],
        tuple(candidate["merged"]),
        trust_remote_code=source.trust_remote_code,
    )
    peft_model = PeftModel.from_pretrained(
        model, str(get_store().local_dir(candidate["adapter_uri"]))
    )
    peft_model.eval()
    new_samples = sample_once(
        peft_model,
        tokenizer,
        gate_prompts,
        temperature=temperature,
        max_new_tokens=max_new,
        seed=seed,
        stop_strings=stop_strings,
    )
    reporter.progress(1, 3, force=True)
    kl = mean_kl_to_reference(
        peft_model, tokenizer, gate_prompts, new_samples, temperature=temperature
    )
    del peft_model, model
    previous_model, previous_tokenizer = load_policy_for_generation(
        PolicySpec(
            version_id=source.current_version_id,
            base_model=source.base_model,
            adapter_uri=source.current_adapter_uri,
            merged_adapter_uris=source.current_merged,
            trust_remote_code=source.trust_remote_code,
        )
    )
    old_samples = sample_once(
        previous_model,
        previous_tokenizer,
        gate_prompts,
        temperature=temperature,
        max_new_tokens=max_new,
        seed=seed,
        stop_strings=stop_strings,
    )
    del previous_model  # one model in memory at a time: the reward models come next
    reporter.progress(2, 3, force=True)
    new_texts, old_texts = [s.text for s in new_samples], [s.text for s in old_samples]
    tokens = statistics.fmean(len(s.token_ids) for s in new_samples) if new_samples else 0.0
    confidence = start.config.get("gate_confidence", 0.95)
    gate: dict[str, Any] = {
        "kl": kl,
        "kl_per_token": kl / tokens if tokens else None,
        "max_kl": start.config["max_kl"],
        "gate_samples": n,
        "identical_samples": statistics.fmean(
            a == b for a, b in zip(new_texts, old_texts, strict=True)
        )
        if new_texts
        else 1.0,
    }
    judge = _round_reward_model(start.round_id, judge=True)
    trained_on = _round_reward_model(start.round_id)
    if judge is not None:
        judge_fn = _score_fn(*_load_reward_model(judge[1]))
        trained_fn = (
            _score_fn(*_load_reward_model(trained_on[1]))
            if start.type == "reward_ppo" and trained_on is not None and trained_on != judge
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
                confidence=confidence,
                seed=seed,
            ),
            scorer="held-out reward model" if judge != trained_on else "the round's reward model",
            min_score_gain=start.config.get("min_score_gain", 0.0),
        )
        del judge_fn, trained_fn
    extra_check = GATE_FIGURES.get(start.type)
    if extra_check is not None:
        extra_check(start, candidate, gate)
    passed, reasons = promotion.decide(gate, start.config)
    gate["passed"] = passed
    reporter.progress(3, 3, force=True)
    with session_scope() as session:
        training_round = service.claim_registration(session, start.round_id)
        if training_round is None:  # cancelled (or reaped) while the gate ran: register nothing
            raise RoundCancelled
        version = lineage.register_policy_version(
            session,
            training_round=training_round,
            base_model=candidate["base_model"],
            artifact_uri=candidate["adapter_uri"],
            merged=tuple(candidate["merged"]),
            metrics=_json_safe({"gate": gate, "round_type": start.type}),
            promote=passed,
        )
        service.set_summary(
            session, start.round_id, "gate", _json_safe({**gate, "version": version.number})
        )
        if not passed:
            service.reject_round(
                session,
                start.round_id,
                "The new version did not pass the promotion gate: " + "; ".join(reasons),
            )


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
    from worker.training.evaluation import length_correlation, paired_bootstrap_interval

    from_evaluation = judge(prompts, new_texts)
    new_scores = _per_prompt_means(from_evaluation, samples_per_prompt)
    old_scores = _per_prompt_means(judge(prompts, old_texts), samples_per_prompt)
    low, high = paired_bootstrap_interval(old_scores, new_scores, seed=seed, confidence=confidence)
    figures: dict[str, Any] = {
        "new_score": statistics.fmean(new_scores),
        "previous_score": statistics.fmean(old_scores),
        "score_gain": statistics.fmean(new_scores) - statistics.fmean(old_scores),
        "score_gain_low": low,
        "score_gain_high": high,
        "confidence": confidence,
        "length_correlation": length_correlation(from_evaluation, new_texts),
    }
    if trained_on is not None:
        figures["training_rm_gain"] = statistics.fmean(
            trained_on(prompts, new_texts)
        ) - statistics.fmean(trained_on(prompts, old_texts))
    return figures


def _per_prompt_means(scores: list[float], n: int) -> list[float]:
    """Mean of each consecutive run of n scores (the n samples of one prompt)."""
    return [statistics.fmean(scores[i : i + n]) for i in range(0, len(scores), n)]


def _dpo_figures(start: StageStart, candidate: dict[str, Any], gate: dict[str, Any]) -> None:
    gate["heldout_accuracy"] = (candidate.get("dpo") or {}).get("heldout_accuracy")
    gate["min_heldout_accuracy"] = start.config["min_heldout_accuracy"]


# Figures a round type adds to the gate's (the decision itself is `app.rounds.gate.decide`).
GATE_FIGURES: dict[str, Callable[[StageStart, dict[str, Any], dict[str, Any]], None]] = {
    "dpo": _dpo_figures,
}


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
