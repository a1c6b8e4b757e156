"""Queries behind the exports: one filtered, id-ordered SELECT streamed with a server-side
cursor, and small batched look-ups (texts, names) for the rows of each batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Select,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from app.models import (
    AnnotatorExclusion,
    Comparison,
    ComparisonSnapshot,
    Judge,
    PolicyVersion,
    Prompt,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SnapshotComparison,
    TaskSample,
    TrainingRound,
    User,
)

IN_CHUNK = 1000  # ids per IN (...) list: far below every backend's parameter limit


@dataclass(frozen=True)
class Filters:
    """Filters resolved to ids (built in the request, used by the streaming generator)."""

    project_id: int
    version_ids: frozenset[int] | None = None
    round_version_ids: frozenset[int] | None = None
    """With a round filter: the versions the round trained..."""
    newer_version_ids: frozenset[int] = frozenset()
    """...and versions of later rounds, whose samples make a comparison belong to those."""
    user_ids: frozenset[int] | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_agreement: float | None = None
    exclude_flagged: bool = True
    excluded_user_ids: frozenset[int] = frozenset()
    snapshot_id: int | None = None
    include_ties: bool = False
    include_gold: bool = False
    """Keep gold tasks' rankings and comparisons (they measure annotators, not answers)."""
    sources: tuple[str, ...] = ("human",)
    """rankings.source / comparisons.source kept: people's by default (snapshots: all)."""


# Look-ups done once per export, in the request


def project_versions(session: Session, project_id: int) -> dict[int, int | None]:
    """Policy version id → id of the round that trained it (None for base/uploaded)."""
    rows = session.execute(
        select(PolicyVersion.id, PolicyVersion.round_id).where(
            PolicyVersion.project_id == project_id
        )
    )
    return dict(rows.tuples().all())


def project_rounds(session: Session, project_id: int) -> dict[int, int]:
    """Round id → round number."""
    rows = session.execute(
        select(TrainingRound.id, TrainingRound.number).where(TrainingRound.project_id == project_id)
    )
    return dict(rows.tuples().all())


def get_snapshot(session: Session, snapshot_id: int) -> ComparisonSnapshot | None:
    return session.get(ComparisonSnapshot, snapshot_id)


def excluded_users(session: Session, project_id: int) -> frozenset[int]:
    return frozenset(
        session.scalars(
            select(AnnotatorExclusion.user_id).where(AnnotatorExclusion.project_id == project_id)
        )
    )


def annotators(session: Session, project_id: int) -> list[tuple[int, str]]:
    """(id, username) of everyone who ranked in the project."""
    ranked = select(Ranking.user_id).where(Ranking.project_id == project_id).distinct()
    return [
        (uid, name)
        for uid, name in session.execute(select(User.id, User.username).where(User.id.in_(ranked)))
    ]


def has_conversations(session: Session, project_id: int) -> bool:
    """Whether any prompt is multi-turn (JSON null and SQL NULL both mean plain text)."""
    rows = session.scalars(
        select(Prompt.messages)
        .where(Prompt.project_id == project_id, Prompt.messages.is_not(None))
        .execution_options(yield_per=500)
    )
    return any(messages for messages in rows)


# The streamed SELECTs


def _flagged(sample_id: Any) -> ColumnElement[bool]:
    # 'harmful' only: a judge's 'suggested_harmful' is a suggestion for people, no final flag
    return exists(
        select(SampleFlag.id).where(SampleFlag.sample_id == sample_id, SampleFlag.kind == "harmful")
    )


def agreeing_tasks(project_id: int, min_agreement: float, excluded: frozenset[int]) -> Select[int]:
    """Tasks whose annotators agree on at least `min_agreement` of the sample pairs.

    Each row of the self-join is one sample pair judged by two annotators of the same task;
    they agree when they chose the same winner, or both called it a tie
    (docs/training-notes.md §Agreement).
    Tasks with a single annotator have no such rows and are left out. People's agreement:
    a model judge's rankings neither make nor break it (judges are measured on their own).
    """
    a, b = aliased(Comparison), aliased(Comparison)

    def low(c: Any) -> Any:
        return case((c.winner_id < c.loser_id, c.winner_id), else_=c.loser_id)

    def high(c: Any) -> Any:
        return case((c.winner_id < c.loser_id, c.loser_id), else_=c.winner_id)

    agree = case((and_(a.winner_id == b.winner_id, a.tie == b.tie), 1.0), else_=0.0)
    query = (
        select(a.task_id)
        .join(
            b,
            and_(
                b.task_id == a.task_id,
                b.user_id > a.user_id,
                low(b) == low(a),
                high(b) == high(a),
            ),
        )
        .where(a.project_id == project_id, a.source == "human", b.source == "human")
        .group_by(a.task_id)
        .having(func.avg(agree) >= min_agreement)
    )
    if excluded:
        query = query.where(a.user_id.not_in(excluded), b.user_id.not_in(excluded))
    return query


def pair_rows(filters: Filters) -> Select[*tuple[Any, ...]]:
    c = Comparison
    conditions: list[ColumnElement[bool]] = [c.project_id == filters.project_id]
    if not filters.include_ties:
        conditions.append(c.tie.is_(False))
    if not filters.include_gold:
        conditions.append(c.gold.is_(False))
    if filters.snapshot_id is not None:
        conditions.append(
            c.id.in_(
                select(SnapshotComparison.comparison_id).where(
                    SnapshotComparison.snapshot_id == filters.snapshot_id
                )
            )
        )
    else:
        conditions.append(c.source.in_(filters.sources))
        if filters.excluded_user_ids:
            conditions.append(c.user_id.not_in(filters.excluded_user_ids))
        if filters.exclude_flagged:
            conditions.extend([~_flagged(c.winner_id), ~_flagged(c.loser_id)])
    if filters.version_ids is not None:
        conditions.append(
            or_(
                c.winner_version_id.in_(filters.version_ids),
                c.loser_version_id.in_(filters.version_ids),
            )
        )
    if filters.round_version_ids is not None:
        conditions.append(
            or_(
                c.winner_version_id.in_(filters.round_version_ids),
                c.loser_version_id.in_(filters.round_version_ids),
            )
        )
        if filters.newer_version_ids:
            conditions.extend(
                [
                    c.winner_version_id.not_in(filters.newer_version_ids),
                    c.loser_version_id.not_in(filters.newer_version_ids),
                ]
            )
    conditions.extend(_who_and_when(filters, c))
    return (
        select(
            c.id,
            c.prompt_id,
            c.winner_id,
            c.loser_id,
            c.winner_version_id,
            c.loser_version_id,
            c.user_id,
            c.tie,
            # the driver's datetime as is: skips a Python call per row (the exporter adds UTC
            # to SQLite's zone-less values)
            type_coerce(c.created_at, DateTime(timezone=True)),
            c.source,
        )
        .where(*conditions)
        .order_by(c.id)
    )


def _who_and_when(
    filters: Filters, rows: type[Comparison] | type[Ranking]
) -> list[ColumnElement[bool]]:
    """The filters comparisons and rankings share: annotators, time window, agreement."""
    conditions: list[ColumnElement[bool]] = []
    if filters.user_ids is not None:
        conditions.append(rows.user_id.in_(filters.user_ids))
    if filters.since is not None:
        conditions.append(rows.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(rows.created_at < filters.until)
    if filters.min_agreement is not None:
        conditions.append(rows.task_id.in_(_agreeing(filters)))
    return conditions


def _agreeing(filters: Filters) -> Select[int]:
    excluded = frozenset() if filters.snapshot_id is not None else filters.excluded_user_ids
    assert filters.min_agreement is not None
    return agreeing_tasks(filters.project_id, filters.min_agreement, excluded)


def _task_has_version(versions: frozenset[int]) -> ColumnElement[bool]:
    return exists(
        select(TaskSample.sample_id)
        .join(Sample, Sample.id == TaskSample.sample_id)
        .where(TaskSample.task_id == Ranking.task_id, Sample.policy_version_id.in_(versions))
    )


def ranking_rows(filters: Filters) -> Select[*tuple[Any, ...]]:
    r = Ranking
    conditions: list[ColumnElement[bool]] = [r.project_id == filters.project_id]
    if not filters.include_gold:
        conditions.append(RankingTask.gold.is_(False))
    if filters.snapshot_id is not None:
        conditions.append(
            r.id.in_(
                select(Comparison.ranking_id)
                .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
                .where(SnapshotComparison.snapshot_id == filters.snapshot_id)
            )
        )
    else:
        conditions.append(r.source.in_(filters.sources))
        if filters.excluded_user_ids:
            conditions.append(r.user_id.not_in(filters.excluded_user_ids))
    if filters.version_ids is not None:
        conditions.append(_task_has_version(filters.version_ids))
    if filters.round_version_ids is not None:
        conditions.append(_task_has_version(filters.round_version_ids))
        if filters.newer_version_ids:
            conditions.append(~_task_has_version(filters.newer_version_ids))
    conditions.extend(_who_and_when(filters, r))
    return (
        select(
            r.id,
            r.task_id,
            RankingTask.prompt_id,
            r.user_id,
            r.groups,
            r.none_usable,
            r.none_usable_reason,
            r.created_at,
            r.source,
            Judge.name,
            r.judge_prompt_version,
        )
        .join(RankingTask, RankingTask.id == r.task_id)
        .outerjoin(Judge, Judge.id == r.judge_id)
        .where(*conditions)
        .order_by(r.id)
    )


# Batched look-ups while streaming


def _chunks(session: Session, ids: Iterable[int]) -> Iterator[list[int]]:
    batch = sorted(set(ids))
    size = (len(batch) or 1) if _is_postgres(session) else IN_CHUNK
    for start in range(0, len(batch), size):
        yield batch[start : start + size]


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _id_in(session: Session, column: Any, ids: list[int]) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL one array parameter (`= ANY(:ids)`), which the driver
    sends as is, instead of thousands of parameters parsed into the query on every batch."""
    if _is_postgres(session):
        return column == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
    return column.in_(ids)


def sample_texts(session: Session, ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(session, ids):
        rows = session.execute(
            select(Sample.id, Sample.text).where(_id_in(session, Sample.id, chunk))
        )
        found.update(rows.tuples().all())
    return found


def samples(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """Sample id → (text, policy version id)."""
    found: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(session, ids):
        rows = session.execute(
            select(Sample.id, Sample.text, Sample.policy_version_id).where(
                _id_in(session, Sample.id, chunk)
            )
        )
        found.update((sid, (text, vid)) for sid, text, vid in rows)
    return found


def prompts(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, list[Any] | None]]:
    """Prompt id → (text, messages or None)."""
    found: dict[int, tuple[str, list[Any] | None]] = {}
    for chunk in _chunks(session, ids):
        rows = session.execute(
            select(Prompt.id, Prompt.text, Prompt.messages).where(_id_in(session, Prompt.id, chunk))
        )
        found.update((pid, (text, messages)) for pid, text, messages in rows)
    return found


def usernames(session: Session, ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(session, ids):
        found.update(
            session.execute(select(User.id, User.username).where(_id_in(session, User.id, chunk)))
            .tuples()
            .all()
        )
    return found


def flagged(session: Session, ids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(session, ids):
        found.update(
            session.scalars(
                select(SampleFlag.sample_id).where(
                    _id_in(session, SampleFlag.sample_id, chunk), SampleFlag.kind == "harmful"
                )
            )
        )
    return found


def snapshot_members(
    session: Session, snapshot_id: int, ranking_ids: Iterable[int]
) -> dict[int, set[int]]:
    """Ranking id → the sample ids its snapshot comparisons involve."""
    members: dict[int, set[int]] = {}
    for chunk in _chunks(session, ranking_ids):
        rows = session.execute(
            select(Comparison.ranking_id, Comparison.winner_id, Comparison.loser_id)
            .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
            .where(
                SnapshotComparison.snapshot_id == snapshot_id,
                _id_in(session, Comparison.ranking_id, chunk),
            )
        )
        for ranking_id, winner, loser in rows:
            members.setdefault(ranking_id, set()).update((winner, loser))
    return members
