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

MIN_RANKINGS = 4


@dataclass(frozen=True)
class RewardModelRun:
    """A registered reward model version and the figures of its training."""

    version_id: int | None
    """None when the run was stored but not registered (`register=False`)."""
    number: int | None
    snapshot_id: int
    summary: dict[str, Any]
    """heldout_accuracy (+ _low/_high: its 95 % interval), best_epoch, epochs (per-epoch
    metrics), n_train, n_heldout, train_forward_passes."""
    artifact_uri: str
    base_model: str
    norm_mean: float
    norm_std: float


def train_project_reward_model(
    project_id: int,
    settings: dict[str, Any] | RewardModelSettings | None = None,
    *,
    seed: int = 0,
    reference: str = "start",
    name: str = "reward model",
    round_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    register: bool = True,
    artifact_name: str | None = None,
    snapshot_id: int | None = None,
) -> RewardModelRun | None:
    """Snapshot the project's eligible comparisons, train on them, normalise, register.

    Returns None when `should_stop` ended training (nothing registered). With `round_id` the
    snapshot and the summary are recorded on that round too. Too few rankings is a ValueError
    raised before anything is written. `register=False` stores the model's files and returns
    them without a version: the caller registers it (`register_run`) once it has checked it,
    or keeps it as the gate's held-out scorer.
    """
    from worker.training.reward_model import (
        RankingExample,
        RewardModelConfig,
        normalise,
        train_reward_model,
    )

    cfg = RewardModelSettings.model_validate(settings or {})
    with session_scope() as session:
        if snapshot_id is None:
            snapshot_id = snapshots.create_snapshot(session, project_id=project_id, name=name).id
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
        ref_prompts, ref_responses = lineage.reference_samples(
            session, project_id=project_id, reference=reference
        )
    examples = [RankingExample(r.prompt, r.responses, r.groups) for r in rankings]
    base_name = cfg.base_model or project_base
    config = RewardModelConfig(
        epochs=cfg.epochs,
        lr=cfg.learning_rate,
        heldout_fraction=cfg.heldout_fraction,
        max_length=cfg.max_length,
        patience=cfg.patience,
        seed=seed,
    )
    workdir = Path(tempfile.mkdtemp(prefix="rankloop-rm-"))
    try:
        result = train_reward_model(
            resolve_base_model(base_name),
            examples,
            config,
            out_dir=workdir,
            progress=progress,
            should_stop=should_stop,
        )
        if result.stopped or (should_stop is not None and should_stop()):
            return None  # cancelled: register nothing
        if len(ref_responses) >= 2:  # RLHF_NOTES: mean 0 / std 1 on the reference's samples
            normalise(
                result.model,
                result.tokenizer,
                ref_prompts,
                ref_responses,
                max_length=config.max_length,
            )
            result.model.save(workdir, tokenizer=result.tokenizer)
        uri = get_store().put_dir(
            workdir,
            f"projects/{project_id}/reward_models/{artifact_name or f'snapshot-{snapshot_id}'}",
        )
        low, high = result.heldout_accuracy_interval or (None, None)
        summary = json_safe(
            {
                "heldout_accuracy": result.heldout_accuracy,
                "heldout_accuracy_low": low,
                "heldout_accuracy_high": high,
                "best_epoch": result.best_epoch,
                "lr": result.lr,
                "lr_trials": result.lr_trials,
                "heldout_ranking_counts": result.heldout_ranking_counts,
                "epochs": result.epochs,
                "n_train": result.n_train,
                "n_heldout": result.n_heldout,
                "train_forward_passes": result.train_forward_passes,
            }
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run = RewardModelRun(
        version_id=None,
        number=None,
        snapshot_id=snapshot_id,
        summary=summary,
        artifact_uri=uri,
        base_model=base_name,
        norm_mean=result.model.reward_mean,
        norm_std=result.model.reward_std,
    )
    return register_run(project_id, run, round_id=round_id) if register else run


def register_run(project_id: int, run: RewardModelRun, *, round_id: int | None) -> RewardModelRun:
    """Register a stored run as the project's next reward model version (one transaction)."""
    with session_scope() as session:
        rm = lineage.register_reward_model(
            session,
            round_id=round_id,
            project_id=project_id,
            snapshot_id=run.snapshot_id,
            base_model=run.base_model,
            artifact_uri=run.artifact_uri,
            norm_mean=run.norm_mean,
            norm_std=run.norm_std,
            metrics=run.summary,
        )
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
