"""What the round pages show, assembled from the services (routes stay thin)."""

from __future__ import annotations

from dataclasses import dataclass
from types import UnionType
from typing import Any, get_args

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.health import queue_lengths, worker_statuses
from app.models import TrainingRound
from app.projects.service import require_project
from app.rounds import registry, repository, service, sizing
from app.rounds.charts import round_charts
from app.rounds.gate import LABELS as GATE_LABELS
from app.server_paths import strip_server_paths


@dataclass(frozen=True)
class ConfigField:
    name: str  # dotted path, e.g. "ppo.steps"
    label: str
    kind: str  # "number", "text", "bool", "choice"
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""


def config_fields(model: type[BaseModel], prefix: str = "") -> list[ConfigField]:
    """Flatten a round config model into form fields (nested models become dotted names)."""
    fields: list[ConfigField] = []
    for name, info in model.model_fields.items():
        if name == "type":
            continue
        annotation = info.annotation
        options = [a for a in get_args(annotation) if a is not type(None)]
        if isinstance(annotation, UnionType) and len(options) == 1:  # `int | None`: optional
            annotation = options[0]
        dotted = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields.extend(config_fields(annotation, prefix=f"{dotted}."))
            continue
        choices = tuple(getattr(annotation, "__args__", ()) or ())
        if annotation is bool:
            kind = "bool"
        elif choices and all(isinstance(c, str) for c in choices):
            kind = "choice"
        elif annotation in (int, float):
            kind = "number"
        else:
            kind, choices = "text", ()
        fields.append(
            ConfigField(
                name=dotted,
                label=dotted.replace("_", " ").replace(".", " · "),
                kind=kind,
                default="" if info.default is None else info.default,
                choices=choices,
                help=info.description or "",
            )
        )
    return fields


def form_to_config(form: dict[str, Any]) -> dict[str, Any]:
    """Dotted form names → nested dict; empty values mean "use the default"."""
    config: dict[str, Any] = {}
    for key, value in form.items():
        if key in ("csrf_token", "type") or value in ("", None):
            continue
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise InvalidInput(
                    f"{key!r}: {parent!r} is a value, not a group of settings",
                    details=[{"field": key, "message": f"{parent} has no settings"}],
                )
        if isinstance(target.get(leaf), dict):
            raise InvalidInput(
                f"{key!r} is a group of settings, not a value",
                details=[{"field": key, "message": "a group of settings"}],
            )
        target[leaf] = value
    return config


def start_round_from_form(
    session: Session, *, project_id: int, form: dict[str, Any], user_id: int
) -> TrainingRound:
    return service.start_round(
        session,
        project_id=project_id,
        round_type=str(form.get("type", "")),
        config=form_to_config(form),
        user_id=user_id,
    )


def rounds_context(session: Session, *, project_id: int, round_type: str) -> dict[str, Any]:
    project = require_project(session, project_id)
    prompts, rankings = repository.sizing_counts(session, project_id)
    sized = sizing.size_round(
        project,
        round_type=round_type,
        config=service.parse_config(round_type, {}),
        prompts=prompts,
        rankings=rankings,
    )
    sized["seed"] = sizing.Sized("new each round", "derived from the round's id")
    return {
        "project": project,
        "sized": sized,
        "rounds": repository.list_rounds(session, project_id),
        "active": repository.active_round(session, project_id),
        "round_type": round_type,
        "round_types": registry.names(),
        "fields": config_fields(registry.get(round_type).config),
        "workers": worker_statuses(session),
        "queues": queue_lengths(),
    }


def round_context(session: Session, *, round_id: int, settings: Settings) -> dict[str, Any]:
    training_round = service.require_round(session, round_id)
    progress = training_round.progress or {}
    step, total = progress.get("step") or 0, progress.get("total")
    stage_share = (step / total) if total else 0.0
    stages = progress.get("stages") or 1
    stage_index = progress.get("stage_index") or 0
    overall = (
        100.0
        if training_round.state.value == "done"
        else max(0.0, (stage_index - 1 + stage_share) / stages * 100)
    )
    error_line, error_detail = error_parts(training_round.error, training_round.error_detail)
    return {
        "round": training_round,
        "error_line": error_line,
        "error_detail": error_detail,
        "registered_version": service.registered_version(session, round_id),
        "project": require_project(session, training_round.project_id),
        "progress": progress,
        "overall_percent": round(overall, 1),
        "stage_percent": round(stage_share * 100, 1),
        "charts": round_charts(training_round.metrics or {}),
        "summary": {
            k: v
            for k, v in (training_round.metrics or {}).items()
            if k in ("reward_model_summary", "gate", "candidate")
        },
        "gate_labels": GATE_LABELS,
        "prompt_cuts": prompt_cuts(training_round.metrics or {}),
        "sizing": (training_round.metrics or {}).get("sizing") or {},
        "reward_judge": reward_judge(training_round.metrics or {}),
        "policy_procs_reason": ((training_round.metrics or {}).get("candidate") or {}).get(
            "train_procs_reason"
        ),
        "workers": worker_statuses(session),
        "queues": queue_lengths(),
    }


def reward_judge(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The judge that scored a round in place of a reward model (`reward_judge_id`: the worker
    skipped the reward-model stage and recorded the judge's lineage), or None."""
    judge = metrics.get("reward_judge")
    return judge if "reward_model_skipped" in metrics and isinstance(judge, dict) else None


@dataclass(frozen=True)
class StageCuts:
    """The prompts a stage shortened to fit the model (issue 21: each stage reports them)."""

    stage: str
    turns_dropped: int
    """Conversations that lost their oldest turns."""
    truncated: int
    """Prompts left-truncated (a prompt may be both)."""


def prompt_cuts(metrics: dict[str, Any]) -> list[StageCuts]:
    """Each stage that shortened prompts, in the round's order: the reward model, the policy's
    training (the candidate's `ppo`, `sft` or `dpo` figures), the evaluating stage (gate)."""
    candidate = metrics.get("candidate") or {}
    stages = [
        ("reward model", metrics.get("reward_model_summary")),
        *((f"{name.upper()} training", figures) for name, figures in candidate.items()),
        ("evaluating", metrics.get("gate")),
    ]
    found = []
    for stage, figures in stages:
        if not isinstance(figures, dict):
            continue
        dropped, truncated = (
            int(figures.get("prompts_turns_dropped") or 0),
            int(figures.get("prompts_truncated") or 0),
        )
        if dropped or truncated:
            found.append(StageCuts(stage, dropped, truncated))
    return found


def error_parts(error: str | None, detail: str | None) -> tuple[str | None, str | None]:
    """(the one-line reason, the details for admins) of a failed round or job. An error stored
    before reasons were one line (a whole traceback) shows its last line, the exception, and
    the traceback as its details."""
    if not error or not error.strip():
        return None, detail
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if len(lines) == 1:
        return lines[0], detail
    return strip_server_paths(lines[-1]), detail or strip_server_paths(error.strip())
