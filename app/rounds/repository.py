"""Queries for rounds, reward model versions and policy versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    TERMINAL_ROUND_STATES,
    PolicyStatus,
    PolicyVersion,
    RewardModelVersion,
    RoundState,
    TrainingRound,
)

RUNNING_STATES = [
    RoundState.reward_model,
    RoundState.policy,
    RoundState.evaluating,
    RoundState.sampling,
]


def get_round(session: Session, round_id: int) -> TrainingRound | None:
    return session.get(TrainingRound, round_id)


def lock_round(session: Session, round_id: int) -> TrainingRound | None:
    """The round's row re-read and locked until commit (FOR UPDATE on PostgreSQL; SQLite's
    writers already run one at a time), so a cancel and a registration cannot interleave."""
    return session.scalar(
        select(TrainingRound)
        .where(TrainingRound.id == round_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def version_registered_by(session: Session, round_id: int) -> PolicyVersion | None:
    return session.scalar(select(PolicyVersion).where(PolicyVersion.round_id == round_id))


def active_round(session: Session, project_id: int) -> TrainingRound | None:
    return session.scalar(
        select(TrainingRound).where(
            TrainingRound.project_id == project_id,
            TrainingRound.state.not_in(list(TERMINAL_ROUND_STATES)),
        )
    )


def next_round_number(session: Session, project_id: int) -> int:
    current = session.scalar(
        select(func.max(TrainingRound.number)).where(TrainingRound.project_id == project_id)
    )
    return int(current or 0) + 1


def list_rounds(session: Session, project_id: int) -> list[TrainingRound]:
    return list(
        session.scalars(
            select(TrainingRound)
            .where(TrainingRound.project_id == project_id)
            .order_by(TrainingRound.number.desc())
        )
    )


def stale_rounds(session: Session, *, before: datetime) -> list[TrainingRound]:
    return list(
        session.scalars(
            select(TrainingRound).where(
                TrainingRound.state.in_(RUNNING_STATES),
                TrainingRound.heartbeat_at < before,
            )
        )
    )


def current_version(session: Session, project_id: int) -> PolicyVersion | None:
    return session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project_id, PolicyVersion.status == PolicyStatus.current
        )
    )


def next_version_number(session: Session, project_id: int) -> int:
    current = session.scalar(
        select(func.max(PolicyVersion.number)).where(PolicyVersion.project_id == project_id)
    )
    return int(current or 0) + 1


def next_reward_model_number(session: Session, project_id: int) -> int:
    current = session.scalar(
        select(func.max(RewardModelVersion.number)).where(
            RewardModelVersion.project_id == project_id
        )
    )
    return int(current or 0) + 1


def latest_reward_model(session: Session, project_id: int) -> RewardModelVersion | None:
    return session.scalar(
        select(RewardModelVersion)
        .where(RewardModelVersion.project_id == project_id)
        .order_by(RewardModelVersion.number.desc())
        .limit(1)
    )


def reward_model_for_round(session: Session, round_id: int) -> RewardModelVersion | None:
    return session.scalar(select(RewardModelVersion).where(RewardModelVersion.round_id == round_id))


def sizing_counts(session: Session, project_id: int) -> tuple[int, int]:
    """(active prompts, usable rankings) of a project: what a round's defaults are sized from."""
    from app.models import Prompt, Ranking

    prompts = session.scalar(
        select(func.count(Prompt.id)).where(Prompt.project_id == project_id, Prompt.active)
    )
    rankings = session.scalar(
        select(func.count(Ranking.id)).where(
            Ranking.project_id == project_id, Ranking.none_usable.is_(False)
        )
    )
    return int(prompts or 0), int(rankings or 0)
