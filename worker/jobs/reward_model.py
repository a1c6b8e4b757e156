"""Train and register a project's reward model: the round's first stage and
`rankloop train-reward-model` both call `train_project_reward_model`, so the CLI trains on the
same snapshot rules, normalisation and registration as a round does.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.artifacts import get_store
from app.db import session_scope
from app.models import TrainingRound
from app.rounds import lineage, service, snapshots
from app.rounds.schemas import RewardModelSettings
from worker.policies import resolve_base_model
from worker.training.outcomes import Progress, ShouldStop, TrainingCancelled

MIN_RANKINGS = 4


@dataclass(frozen=True)
class RewardModelRun(lineage.StoredRewardModel):
    """A trained and stored reward model; once registered, its version."""

    version_id: int | None = None
    """None when the run was stored but not registered (`register=False`)."""
    number: int | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """heldout_accuracy (+ _low/_high: its 95 % interval; heldout_weighted_accuracy: each
        ranking counted by its reliability weight), n_train_weight_zero, best_epoch, epochs
        (per-epoch metrics), n_train, n_heldout, train_forward_passes, prompts_turns_dropped and
        prompts_truncated (prompts shortened to fit): the version's metrics."""
        return self.metrics


def train_project_reward_model(
    project_id: int,
    settings: dict[str, Any] | RewardModelSettings | None = None,
    *,
    seed: int = 0,
    reference: str = "start",
    name: str = "reward model",
    round_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: ShouldStop | None = None,
    register: bool = True,
    artifact_name: str | None = None,
    snapshot_id: int | None = None,
    judge_weight: float | None = None,
    judge_only: bool | None = None,
) -> RewardModelRun:
    """Snapshot the project's eligible comparisons, train on them, register.

    The trainer normalises rewards on the samples of the `reference` policy
    (`lineage.reference_samples`). `progress(step, total_steps)` follows every optimizer step.
    With `round_id` the snapshot and the summary are recorded on that round too. Too few
    rankings is a ValueError raised before anything is written; `should_stop()` answering True
    raises TrainingCancelled, with nothing stored or registered. `register=False` stores the
    model's files and returns them without a version: the caller registers it (`register_run`)
    once it has checked it, or keeps it as the gate's held-out scorer. `judge_weight` and
    `judge_only` override the project's for the judge (AI) comparisons the snapshot takes.
    """
    from app.config import get_settings
    from worker.distributed.training_entries import RESULT_FIELDS, SUMMARY_FIELDS
    from worker.training.reward_ensemble import save_ensemble
    from worker.training.reward_model import RankingExample, RewardModelConfig, train_reward_model

    cfg = RewardModelSettings.model_validate(settings or {})
    with session_scope() as session:
        if snapshot_id is None:
            snapshot_id = snapshots.create_snapshot(
                session,
                project_id=project_id,
                name=name,
                judge_weight=judge_weight,
                judge_only=judge_only,
            ).id
        rankings = snapshots.ranked_responses(session, snapshot_id)
        if len(rankings) < MIN_RANKINGS:  # raising here rolls the snapshot back
            raise ValueError(
                f"The reward model needs rankings to learn from: the snapshot has "
                f"{len(rankings)} usable rankings (at least {MIN_RANKINGS} needed)"
            )
        if round_id is not None:
            training_round = session.get(TrainingRound, round_id)
            assert training_round is not None
            training_round.snapshot_id = snapshot_id
        # The reward model sits on the plain base (no merged policy adapters): policy_source's
        # lineage check is about training the policy, and does not apply here.
        project_base = lineage.base_model(session, project_id)
        reference_samples = lineage.reference_samples(
            session, project_id=project_id, reference=reference
        )
    base_name = cfg.base_model or project_base
    config = RewardModelConfig(
        lr=cfg.learning_rate,
        seed=seed,
        **cfg.model_dump(include={"epochs", "heldout_fraction", "max_length", "patience"}),
    )
    # Each ranking weighs its annotator's reliability weight frozen in the snapshot; a judge's
    # is never held out beside people's (held-out accuracy grades the gate on people's labels).
    examples = [
        RankingExample(r.prompt, r.responses, r.groups, r.weight, human=r.source == "human")
        for r in rankings
    ]
    procs, fsdp = get_settings().train_procs, get_settings().train_fsdp
    key = f"projects/{project_id}/reward_models/{artifact_name or f'snapshot-{snapshot_id}'}"
    trained = None
    workdir = Path(tempfile.mkdtemp(prefix="rankloop-rm-"))  # removed however the run ends
    try:
        if procs > 1:
            result = _train_distributed(
                resolve_base_model(base_name),
                examples,
                config,
                workdir,
                reference=reference_samples,
                progress=progress,
                should_stop=should_stop,
                procs=procs,
                fsdp=fsdp,
                keep_failed_as=f"{key}-failed-run",
            )
        else:
            trained = train_reward_model(
                resolve_base_model(base_name),
                examples,
                config,
                out_dir=workdir,
                reference=reference_samples,
                progress=None if progress is None else _steps_only(progress),
                should_stop=should_stop,
            )
            result = {name: getattr(trained, name) for name in RESULT_FIELDS}
        if should_stop is not None and should_stop():  # asked after the last step
            raise TrainingCancelled("cancelled after training", steps_done=result["steps"])
        if trained is not None:  # (the distributed run saved its own)
            save_ensemble(trained, examples, workdir, config=config)  # for active selection
        uri = get_store().put_dir(workdir, key)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    low, high = result["heldout_accuracy_interval"] or (None, None)
    summary = {
        "heldout_accuracy": result["heldout_accuracy"],
        "heldout_accuracy_low": low,
        "heldout_accuracy_high": high,
        **{name: result[name] for name in SUMMARY_FIELDS},
    }
    run = RewardModelRun(
        snapshot_id,
        base_name,
        uri,
        norm_mean=result["reward_mean"],
        norm_std=result["reward_std"],
        metrics=json_safe(summary),
    )
    return register_run(project_id, run, round_id=round_id) if register else run


def _train_distributed(
    base: str,
    examples: list[Any],
    config: Any,
    out_dir: Path,
    *,
    reference: tuple[list[Any], list[str]],
    progress: Callable[[int, int], None] | None,
    should_stop: ShouldStop | None,
    procs: int,
    fsdp: bool,
    keep_failed_as: str,
) -> dict[str, Any]:
    """`train_reward_model` (and the ensemble) on `procs` processes under torchrun; the
    model lands in `out_dir`, the figures are returned (`RESULT_FIELDS`). A cancel stops every
    process and raises TrainingCancelled, as the in-process trainer does; a failed run's
    payload and logs are kept in the artifact store at `keep_failed_as`."""
    from worker.distributed.entry import write_payload
    from worker.distributed.launch import run_distributed
    from worker.distributed.training_entries import reward_model_payload
    from worker.failures import RoundCancelled

    payload_dir = Path(tempfile.mkdtemp(prefix="rankloop-dist-rm-"))
    steps = [0]

    def relay(line: dict[str, Any]) -> None:
        steps[0] = int(line.get("step", steps[0]))
        if progress is not None and "step" in line:
            progress(int(line["step"]), int(line["total"]))

    try:
        write_payload(
            payload_dir,
            reward_model_payload(
                base,
                examples,
                config,
                out_dir=out_dir,
                reference=reference,
                fsdp=fsdp,
                ensemble=True,
            ),
        )
        return run_distributed(
            "reward_model",
            payload_dir,
            procs=procs,
            on_progress=relay,
            should_cancel=should_stop or (lambda: False),
            keep_failed_as=keep_failed_as,
        )
    except RoundCancelled:
        raise TrainingCancelled(f"stopped at step {steps[0]}", steps_done=steps[0]) from None
    finally:
        shutil.rmtree(payload_dir, ignore_errors=True)


def _steps_only(progress: Callable[[int, int], None]) -> Progress:
    """A trainer's progress that passes (step, total) on: a round's or the CLI's progress bar,
    not its charts, which get the per-epoch figures."""
    return lambda step, total, _metrics: progress(step, total)


def register_run(project_id: int, run: RewardModelRun, *, round_id: int | None) -> RewardModelRun:
    """Register a stored run as the project's next reward model version (one transaction)."""
    with session_scope() as session:
        rm = lineage.register_reward_model(session, run, project_id=project_id, round_id=round_id)
        if round_id is not None:
            service.set_summary(
                session, round_id, "reward_model_summary", {**run.summary, "version": rm.number}
            )
        return dataclasses.replace(run, version_id=rm.id, number=rm.number)


def json_safe(value: Any) -> Any:
    """NaN and ±inf become None so metrics can be stored as JSON on every backend."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
