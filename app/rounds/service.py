"""Round rules: one active round per project, validated configs, stage transitions, progress,
cancellation, and failing rounds whose worker went silent.

Workers call these in short transactions; nothing here holds a transaction open while training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import after_commit, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs import TRAINING_RUN_ROUND_STAGE, enqueue
from app.models import PolicyVersion, RoundState, TrainingRound
from app.projects.service import require_project
from app.rounds import preconditions, registry, repository, sizing
from app.seeds import derived_seed

STAGE_QUEUE = {"sampling": "sampling"}  # every other stage runs on the training queue
MAX_SERIES_POINTS = 2000


def parse_config(round_type: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a round config (defaults filled in); a bad field is a 422 naming it."""
    spec = registry.find(round_type)
    if spec is None:
        raise InvalidInput(
            f"Unknown round type {round_type!r}; choose from {', '.join(registry.names())}",
            details=[{"field": "type", "message": "unknown round type"}],
        )
    try:
        parsed = spec.config.model_validate({**(config or {}), "type": round_type})
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        raise InvalidInput("The round configuration has invalid fields", details=details) from exc
    return parsed.model_dump()


def start_round(
    session: Session,
    *,
    project_id: int,
    round_type: str,
    config: dict[str, Any] | None = None,
    user_id: int | None = None,
    enqueue: bool = True,
) -> TrainingRound:
    project = require_project(session, project_id)
    clean = parse_config(round_type, config)
    prompts, rankings = repository.sizing_counts(session, project_id)
    sized = sizing.size_round(
        project, round_type=round_type, config=clean, prompts=prompts, rankings=rankings
    )
    # The sized values are checked against the same bounds as the admin's own.
    clean = parse_config(round_type, sizing.apply_sizing(clean, sized))
    active = repository.active_round(session, project_id)
    if active is not None:
        raise Conflict(
            f"Round {active.number} of {project.name!r} is still {active.state.value}; "
            "wait for it or cancel it first"
        )
    # Refuse now what a stage would refuse later (after training a reward model for an hour).
    missing = preconditions.problems(session, project, round_type=round_type, config=clean)
    if missing:
        raise InvalidInput(preconditions.refusal_message(missing), details=missing)
    current = repository.current_version(session, project_id)
    training_round = TrainingRound(
        project_id=project_id,
        number=repository.next_round_number(session, project_id),
        type=round_type,
        config=clean,
        base_policy_version_id=current.id if current else None,
        created_by_id=user_id,
        progress={"stage": "queued"},
        metrics={"sizing": {name: item.reason for name, item in sized.items()}},
    )
    try:
        with session.begin_nested():
            session.add(training_round)
            session.flush()
    except IntegrityError as exc:  # a concurrent start won the race (partial unique index)
        raise Conflict(f"Another round of {project.name!r} is already active") from exc
    if clean["seed"] is None:  # a new try every round, reproducible from the round's id
        seed = derived_seed("round", training_round.id)
        training_round.config = {**clean, "seed": seed}
        training_round.metrics = {
            "sizing": {**training_round.metrics["sizing"], "seed": "derived from the round's id"}
        }
    if enqueue:
        round_id, first = training_round.id, registry.get(round_type).stage_names[0]
        after_commit(session, lambda: send_stage(round_id, first))
    return training_round


def send_stage(round_id: int, stage: str) -> None:
    enqueue(TRAINING_RUN_ROUND_STAGE, round_id, stage, queue=STAGE_QUEUE.get(stage, "training"))


def require_round(session: Session, round_id: int) -> TrainingRound:
    training_round = repository.get_round(session, round_id)
    if training_round is None:
        raise NotFound(f"No round {round_id}")
    return training_round


def _locked_round(session: Session, round_id: int) -> TrainingRound:
    """The round re-read and locked until commit: every state change (the worker's stage
    moves, an admin's cancel) reads and writes it in turn, none overwrites another's."""
    training_round = repository.lock_round(session, round_id)
    if training_round is None:
        raise NotFound(f"No round {round_id}")
    return training_round


def cancel_round(session: Session, *, round_id: int) -> TrainingRound:
    """Queued rounds stop at once; a running stage sees the flag between steps.

    A cancelled round registers nothing, so once the round has registered its new version
    (the evaluating stage's last write) the cancel is refused rather than half-honoured.
    """
    training_round = _locked_round(session, round_id)
    if training_round.state.is_terminal:
        raise Conflict(f"Round {training_round.number} already ended ({training_round.state})")
    registered = repository.version_registered_by(session, round_id)
    if registered is not None:
        raise Conflict(
            f"Round {training_round.number} already registered policy version "
            f"{registered.number} and is only sampling it now; it can no longer be cancelled"
        )
    training_round.cancel_requested = True
    if training_round.state == RoundState.queued:
        _end(training_round, RoundState.cancelled)
    return training_round


def _end(
    training_round: TrainingRound,
    state: RoundState,
    error: str | None = None,
    detail: str | None = None,
) -> None:
    training_round.state = state
    training_round.finished_at = utcnow()
    training_round.error = error
    training_round.error_detail = detail
    training_round.progress = {**training_round.progress, "stage": state.value}


@dataclass(frozen=True)
class StageStart:
    round_id: int
    project_id: int
    number: int
    type: str
    config: dict[str, Any]
    base_policy_version_id: int | None


def _running_round(session: Session, round_id: int) -> TrainingRound | None:
    """The round locked, or None when it ended or a cancel asked for (which ends it now)."""
    training_round = _locked_round(session, round_id)
    if training_round.state.is_terminal:
        return None
    if training_round.cancel_requested:
        _end(training_round, RoundState.cancelled)
        return None
    return training_round


def begin_stage(session: Session, round_id: int, stage: str) -> StageStart | None:
    """Enter `stage`; None when the round ended, was cancelled, or the stage already ran."""
    training_round = _running_round(session, round_id)
    if training_round is None:
        return None
    stages = registry.get(training_round.type).stage_names
    if stage not in stages:
        raise InvalidInput(f"A {training_round.type} round has no stage {stage!r}")
    current = training_round.state.value
    if current != "queued" and stages.index(stage) < stages.index(current):
        return None  # a duplicate delivery of an earlier stage: never run work twice
    now = utcnow()
    training_round.state = RoundState(stage)
    training_round.started_at = training_round.started_at or now
    training_round.heartbeat_at = now
    training_round.progress = {
        "stage": stage,
        "stage_index": stages.index(stage) + 1,
        "stages": len(stages),
        "step": 0,
        "total": None,
        "stage_started_at": now.isoformat(),
        "metrics": {},
    }
    return StageStart(
        round_id=training_round.id,
        project_id=training_round.project_id,
        number=training_round.number,
        type=training_round.type,
        config=dict(training_round.config),
        base_policy_version_id=training_round.base_policy_version_id,
    )


def record_progress(
    session: Session,
    round_id: int,
    *,
    step: int,
    total: int | None,
    metrics: dict[str, float] | None = None,
    series: str | None = None,
) -> bool:
    """Heartbeat + progress (+ a point on a chart series). Returns True when cancel was asked."""
    training_round = _locked_round(session, round_id)
    now = utcnow()
    training_round.heartbeat_at = now
    progress = dict(training_round.progress)
    progress.update(step=step, total=total)
    if metrics:
        progress["metrics"] = {k: _finite(v) for k, v in metrics.items()}
    started = progress.get("stage_started_at")
    if started and total and step:
        from datetime import datetime

        elapsed = (now - datetime.fromisoformat(started)).total_seconds()
        progress["eta_seconds"] = round(elapsed / step * (total - step), 1)
    training_round.progress = progress
    if series and metrics:
        all_series = dict(training_round.metrics)
        points = list(all_series.get(series, []))[-MAX_SERIES_POINTS:]
        points.append({"step": step, **{k: _finite(v) for k, v in metrics.items()}})
        all_series[series] = points
        training_round.metrics = all_series
    return training_round.cancel_requested


def _finite(value: float) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def set_summary(session: Session, round_id: int, key: str, value: Any) -> None:
    training_round = _locked_round(session, round_id)
    training_round.metrics = {**training_round.metrics, key: value}


def complete_stage(session: Session, round_id: int, stage: str) -> str | None:
    """Move past `stage`; returns the next stage to enqueue, or None when the round is done."""
    training_round = _running_round(session, round_id)
    if training_round is None:
        return None
    stages = registry.get(training_round.type).stage_names
    index = stages.index(stage)
    if index + 1 == len(stages):
        _end(training_round, RoundState.done)
        return None
    training_round.heartbeat_at = utcnow()
    return stages[index + 1]


def registered_version(session: Session, round_id: int) -> PolicyVersion | None:
    return repository.version_registered_by(session, round_id)


def claim_registration(session: Session, round_id: int) -> TrainingRound | None:
    """Lock the round for registering its version; None when a cancel came first."""
    training_round = repository.lock_round(session, round_id)
    if training_round is None or training_round.cancel_requested:
        return None
    return None if training_round.state.is_terminal else training_round


def end_needs_more_data(session: Session, round_id: int, reason: str) -> None:
    """The rankings hold no signal the reward model could find yet: end without training."""
    training_round = _locked_round(session, round_id)
    if not training_round.state.is_terminal:
        _end(training_round, RoundState.needs_more_data, reason)


def reject_round(session: Session, round_id: int, reason: str) -> None:
    _end(_locked_round(session, round_id), RoundState.rejected, reason)


def fail_round(session: Session, round_id: int, error: str, *, detail: str | None = None) -> None:
    """`error`: one line, what failed and what to do; `detail`: the traceback for admins,
    without server paths (worker.failures)."""
    training_round = _locked_round(session, round_id)
    if not training_round.state.is_terminal:
        _end(
            training_round,
            RoundState.failed,
            error[:2000],
            detail[-20000:] if detail is not None else None,
        )


def mark_cancelled(session: Session, round_id: int) -> None:
    training_round = _locked_round(session, round_id)
    if not training_round.state.is_terminal:
        _end(training_round, RoundState.cancelled)


def reap_stale_rounds(session: Session, *, timeout_seconds: int) -> list[int]:
    """Fail running rounds whose worker stopped sending heartbeats (crashed or killed).

    Run by the workers' reaper (worker/reaper.py), never by a page. Each round is locked and
    looked at again first, so a stage that moved on meanwhile is left alone."""
    before = utcnow() - timedelta(seconds=timeout_seconds)
    reaped = []
    for candidate in repository.stale_rounds(session, before=before):
        training_round = repository.lock_round(session, candidate.id)
        if (
            training_round is None
            or training_round.state.is_terminal
            or training_round.heartbeat_at is None
            or training_round.heartbeat_at >= before
        ):
            continue
        stage = _stage_title(training_round)
        version = repository.version_registered_by(session, training_round.id)
        error = (
            f"The worker stopped responding during {stage} (no heartbeat for more than "
            f"{timeout_seconds} s); start the round again."
            if version is None
            else f"The worker stopped responding during {stage}, after policy version "
            f"{version.number} was registered ({version.status.value}); if its samples are "
            "missing, run `rankloop sample` for the project."
        )
        _end(training_round, RoundState.failed, error)
        reaped.append(training_round.id)
    return reaped


def _stage_title(training_round: TrainingRound) -> str:
    spec = registry.find(training_round.type)
    stage = spec.stage(training_round.state.value) if spec is not None else None
    return stage.title if stage is not None else training_round.state.value


class Throttle:
    """Call-rate limiter for progress writes from tight training loops."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._last = now
            return True
        return False
