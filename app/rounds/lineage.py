"""What a round trains from and what it registers: reference chain, prompts, new versions.

A trained version's adapter applies on top of its base model with `merged_adapters` merged in
(PolicyVersion.metrics["merged_adapters"]); that is how "the reference is the SFT model" and
"the reference is the previous version" are expressed with one copy of the base weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import (
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Project,
    Prompt,
    RewardModelVersion,
    RoundType,
    Sample,
    TrainingRound,
)
from app.rounds import repository


@dataclass(frozen=True)
class PolicySource:
    """Where a round's policy training starts, and the reference it is held close to."""

    base_model: str
    trust_remote_code: bool
    reference_merged: tuple[str, ...]
    init_adapter_uri: str | None
    current_version_id: int
    current_merged: tuple[str, ...]
    current_adapter_uri: str | None


def _merged(version: PolicyVersion) -> tuple[str, ...]:
    return tuple(version.metrics.get("merged_adapters", []))


def _sft_version(session: Session, project_id: int) -> PolicyVersion | None:
    """The newest registered SFT version: after an SFT round it is the project's reference."""
    return session.scalar(
        select(PolicyVersion)
        .join(TrainingRound, TrainingRound.id == PolicyVersion.round_id)
        .where(
            PolicyVersion.project_id == project_id,
            TrainingRound.type == RoundType.sft,
            PolicyVersion.status.in_([PolicyStatus.current, PolicyStatus.retired]),
        )
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    )


def sft_chain(session: Session, project_id: int) -> tuple[str, ...] | None:
    """Merged chain of the newest registered SFT version (the project's reference), if any."""
    version = _sft_version(session, project_id)
    if version is None or version.artifact_uri is None:
        return None
    return (*_merged(version), version.artifact_uri)


def base_model(session: Session, project_id: int) -> str:
    """The plain base model the project's policies (and its reward models) are built on."""
    project = session.get(Project, project_id)
    if project is None:
        raise InvalidInput(f"No project {project_id}")
    current = repository.current_version(session, project_id)
    return (current.base_model if current else None) or project.base_model


def policy_source(
    session: Session, *, project_id: int, reference: str, round_type: str
) -> PolicySource:
    project = session.get(Project, project_id)
    current = repository.current_version(session, project_id)
    if project is None or current is None:
        raise InvalidInput("The project has no current policy version to train")
    if current.kind == PolicyKind.external:
        raise InvalidInput("The current version holds uploaded samples; it cannot be trained")
    current_chain = _merged(current)
    if round_type == RoundType.sft.value:
        reference_merged: tuple[str, ...] = ()
    elif reference == "previous":
        reference_merged = current_chain + ((current.artifact_uri,) if current.artifact_uri else ())
    else:
        reference_merged = sft_chain(session, project_id) or ()
    continues = current.artifact_uri is not None and current_chain == reference_merged
    current_full = current_chain + ((current.artifact_uri,) if current.artifact_uri else ())
    if round_type != RoundType.sft.value and not continues and current_full != reference_merged:
        # The current policy is neither the reference nor the reference plus one adapter
        # (an earlier round merged a version in): training from the reference would quietly
        # throw the earlier rounds away.
        raise InvalidInput(
            f"Version {current.number} was trained with reference 'previous', so it cannot be "
            "continued against the starting policy; start this round with reference "
            "'previous' (or run an SFT round to set a new starting point)",
            details=[{"field": "reference", "message": "use 'previous'"}],
        )
    return PolicySource(
        base_model=current.base_model or project.base_model,
        trust_remote_code=project.trust_remote_code,
        reference_merged=reference_merged,
        init_adapter_uri=current.artifact_uri if continues else None,
        current_version_id=current.id,
        current_merged=current_chain,
        current_adapter_uri=current.artifact_uri,
    )


def split_prompts(
    session: Session, *, project_id: int, eval_count: int, seed: int
) -> tuple[list[Any], list[Any]]:
    """(training prompts, held-out prompts for the gate): a fixed split per project and seed."""
    rows = session.execute(
        select(Prompt.id, Prompt.text, Prompt.messages)
        .where(Prompt.project_id == project_id, Prompt.active)
        .order_by(Prompt.id)
    ).all()
    if len(rows) < 4:
        raise InvalidInput("A round needs at least 4 active prompts")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(eval_count, max(2, len(rows) // 4))
    content = [rows[i][2] or rows[i][1] for i in order]
    return content[n_eval:], content[:n_eval]


def demonstrations(session: Session, *, project_id: int) -> list[tuple[Any, str]]:
    """(prompt content, response) of every demonstration of the project, oldest first."""
    from app.models import Demonstration

    rows = session.execute(
        select(Prompt.text, Prompt.messages, Demonstration.response)
        .join(Demonstration, Demonstration.prompt_id == Prompt.id)
        .where(Demonstration.project_id == project_id)
        .order_by(Demonstration.id)
    ).all()
    return [(messages or text, response) for text, messages, response in rows]


def reference_samples(
    session: Session, *, project_id: int, reference: str = "start", limit: int = 256
) -> tuple[list[Any], list[str]]:
    """Prompts and texts of the reference policy's samples, to normalise reward scores on, so
    that rewards have mean 0 and std 1 on the policy PPO is held close to
    (docs/training-notes.md §Reward model): the current version for reference='previous', else
    the newest SFT version, else version 1.
    Falls back to version 1 when the reference has no samples yet."""
    base = session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.number == 1
        )
    )
    if base is None:
        return [], []
    chosen = (
        repository.current_version(session, project_id)
        if reference == "previous"
        else _sft_version(session, project_id)
    )
    for version in (chosen, base):
        if version is None:
            continue
        rows = session.execute(
            select(Prompt.text, Prompt.messages, Sample.text)
            .join(Sample, Sample.prompt_id == Prompt.id)
            .where(Sample.policy_version_id == version.id, ~Sample.is_empty)
            .order_by(Sample.id)
            .limit(limit)
        ).all()
        if rows:
            return [m or t for t, m, _ in rows], [s for _, _, s in rows]
    return [], []


@dataclass(frozen=True)
class StoredRewardModel:
    """A trained reward model's stored files and figures: what registering it records."""

    snapshot_id: int
    base_model: str
    artifact_uri: str
    norm_mean: float
    norm_std: float
    metrics: dict[str, Any]


def register_reward_model(
    session: Session, stored: StoredRewardModel, *, project_id: int, round_id: int | None
) -> RewardModelVersion:
    """`stored` as the project's next reward model version."""
    version = RewardModelVersion(
        project_id=project_id,
        number=repository.next_reward_model_number(session, project_id),
        round_id=round_id,
        **{f.name: getattr(stored, f.name) for f in fields(StoredRewardModel)},
    )
    session.add(version)
    session.flush()
    return version


def register_policy_version(
    session: Session,
    *,
    training_round: TrainingRound,
    base_model: str,
    artifact_uri: str,
    merged: tuple[str, ...],
    metrics: dict[str, Any],
    promote: bool,
) -> PolicyVersion:
    """One transaction: the new version, and (when promoted) the old current one retired."""
    previous = repository.current_version(session, training_round.project_id)
    reward_model = repository.reward_model_for_round(session, training_round.id)
    if promote and previous is not None:
        previous.status = PolicyStatus.retired
        session.flush()
    version = PolicyVersion(
        project_id=training_round.project_id,
        number=repository.next_version_number(session, training_round.project_id),
        name=f"round {training_round.number} ({training_round.type})",
        kind=PolicyKind.trained,
        status=PolicyStatus.current if promote else PolicyStatus.rejected,
        parent_id=training_round.base_policy_version_id,
        round_id=training_round.id,
        reward_model_version_id=reward_model.id if reward_model else None,
        snapshot_id=training_round.snapshot_id,
        base_model=base_model,
        artifact_uri=artifact_uri,
        metrics={**metrics, "merged_adapters": list(merged)},
    )
    session.add(version)
    session.flush()
    return version
