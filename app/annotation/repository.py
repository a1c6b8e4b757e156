"""Queries for the task queue, rankings and the ratings a submit touches.

Row locks use FOR NO KEY UPDATE (`key_share=True`): it serialises leasing and submitting on a
task without blocking the foreign-key checks of rows that merely reference it. SQLite ignores
locking clauses; there, every writing transaction is BEGIN IMMEDIATE and already serialised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import UTCDateTime
from app.models import (
    Assignment,
    AssignmentState,
    Comparison,
    Judge,
    Project,
    ProjectMember,
    Prompt,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SampleRating,
    TaskSample,
    TaskStatus,
    User,
)
from app.ratings.elo import INITIAL

# Projects and membership


# The statements a next-task or submit runs are built once, here, with bind parameters:
# building a statement cost about as much CPU as running it, on every request.

_MEMBER_PROJECTS = (
    select(Project)
    .join(ProjectMember, ProjectMember.project_id == Project.id)
    .where(ProjectMember.user_id == bindparam("user_id"))
    .order_by(Project.name)
)


def member_projects(session: Session, user_id: int) -> list[Project]:
    return list(session.scalars(_MEMBER_PROJECTS, {"user_id": user_id}))


def member_project(session: Session, *, user_id: int, project_id: int) -> Project | None:
    return session.scalar(
        select(Project)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.user_id == user_id, Project.id == project_id)
    )


_LOCK_USER = select(User.id).where(User.id == bindparam("user_id")).with_for_update(key_share=True)


def lock_user(session: Session, user_id: int) -> None:
    """One leasing transaction per annotator at a time (a double click gets one lease)."""
    session.execute(_LOCK_USER, {"user_id": user_id})


# Leases


_LEASES_OF = (
    select(Assignment, RankingTask.project_id)
    .join(RankingTask, RankingTask.id == Assignment.task_id)
    .where(
        Assignment.user_id == bindparam("user_id"),
        Assignment.state == AssignmentState.leased,
        RankingTask.status == TaskStatus.open,
    )
    .order_by(Assignment.id)
)


def leases_of(session: Session, user_id: int) -> list[tuple[Assignment, int]]:
    """The user's leases on open tasks (expired ones too), with the task's project, oldest first."""
    rows = session.execute(_LEASES_OF, {"user_id": user_id})
    return [(assignment, project_id) for assignment, project_id in rows]


# A model judge's leases never hold a person's slot (app/judges): the slot counts skip them.
_HUMAN_LEASE = Assignment.user_id.not_in(select(Judge.user_id).scalar_subquery())


def _leases(*, live: bool) -> Any:
    """Count of the correlated task's human leases that are live at :now (or expired by then)."""
    expires_at = Assignment.expires_at
    return (
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.task_id == RankingTask.id,
            Assignment.state == AssignmentState.leased,
            expires_at > bindparam("now") if live else expires_at <= bindparam("now"),
            _HUMAN_LEASE,
        )
        .correlate(RankingTask)
        .scalar_subquery()
    )


def _done_by_user() -> Any:
    """The user (:user_id) ranked the task, skipped it, or still holds a lease on it: none of
    these is offered to them again. A held lease past its expiry is one that the user's other
    tab is submitting right now (next-task marks the others expired first): a second lease of
    the user on that task would wait on the submit while holding the task, a deadlock."""
    ranked = exists().where(
        Ranking.task_id == RankingTask.id, Ranking.user_id == bindparam("user_id")
    )
    skipped_or_held = exists().where(
        Assignment.task_id == RankingTask.id,
        Assignment.user_id == bindparam("user_id"),
        Assignment.state.in_([AssignmentState.skipped, AssignmentState.leased]),
    )
    return ranked | skipped_or_held


def lock_candidate(
    session: Session, *, project_id: int, user_id: int, now: datetime, exclude: Sequence[int]
) -> int | None:
    """An open task that seems to have a free slot for this user, locked; or None.

    Tasks nobody holds a live lease on come first, oldest first; then the oldest with a free
    slot. So annotators work on different tasks while there are enough: the annotations of a
    task arrive at different times, and their submits do not queue on the task's row (with
    annotators handed the oldest task in turn, its three submits tended to arrive together).
    SKIP LOCKED lets concurrent annotators take different tasks instead of queueing on one.
    The slot count here comes from the statement's snapshot: `slot_state` re-reads it.
    """
    params: dict[str, Any] = {"project_id": project_id, "user_id": user_id, "now": now}
    if exclude:
        params["exclude"] = list(exclude)
        idle, any_free = _LOCK_IDLE_CANDIDATE_EXCLUDING, _LOCK_CANDIDATE_EXCLUDING
    else:
        idle, any_free = _LOCK_IDLE_CANDIDATE, _LOCK_CANDIDATE
    task_id = session.scalar(idle, params)
    return task_id if task_id is not None else session.scalar(any_free, params)


_LOCK_CANDIDATE = (
    select(RankingTask.id)
    .where(
        RankingTask.project_id == bindparam("project_id"),
        RankingTask.status == TaskStatus.open,
        RankingTask.gold == false(),  # gold tasks come only through lock_gold_candidate
        RankingTask.annotations_done + _leases(live=True) < RankingTask.required_annotations,
        ~_done_by_user(),
    )
    .order_by(RankingTask.id)
    .limit(1)
    .with_for_update(skip_locked=True, key_share=True)
)
_LOCK_IDLE_CANDIDATE = _LOCK_CANDIDATE.where(_leases(live=True) == 0)
_EXCLUDED = RankingTask.id.not_in(bindparam("exclude", expanding=True))
_LOCK_CANDIDATE_EXCLUDING = _LOCK_CANDIDATE.where(_EXCLUDED)
_LOCK_IDLE_CANDIDATE_EXCLUDING = _LOCK_IDLE_CANDIDATE.where(_EXCLUDED)


_LOCK_GOLD_CANDIDATE = (
    select(RankingTask.id)
    .where(
        RankingTask.project_id == bindparam("project_id"),
        RankingTask.status == TaskStatus.open,
        RankingTask.gold,
        ~_done_by_user(),
    )
    .order_by(RankingTask.id)
    .limit(1)
    .with_for_update(read=True, key_share=True)
)


def lock_gold_candidate(session: Session, *, project_id: int, user_id: int) -> int | None:
    """The oldest gold task this user has not ranked, skipped or leased; or None.

    Gold tasks have no slots (every annotator ranks each once), so concurrent annotators may
    lease the same one: FOR KEY SHARE does not block them, nor their submits' progress UPDATE,
    but it does block (and is re-checked after) an admin's unmarking, which locks FOR UPDATE.
    """
    return session.scalar(_LOCK_GOLD_CANDIDATE, {"project_id": project_id, "user_id": user_id})


# Model judges (app/judges): which open tasks a judge may take. Its share is drawn per task
# by a multiplicative hash both SQL dialects compute alike (`judge_takes` is the same in Python).
SHARE_MODULUS = 1_000_003
_SHARE_MULTIPLIER = 2_654_435_761
_JUDGE_MULTIPLIER = 40_503


def judge_takes(*, judge_id: int, task_id: int, share: float) -> bool:
    """Whether a judge with this share judges this task: the same answer every time."""
    if share >= 1:
        return True
    draw = (task_id * _SHARE_MULTIPLIER + judge_id * _JUDGE_MULTIPLIER) % SHARE_MODULUS
    return draw < int(share * SHARE_MODULUS)


def _judge_eligible(
    *, project_id: int, user_id: int, judge_id: int, share: float, unreached_only: bool
) -> list[Any]:
    """Open tasks of the project the judge has not ranked, skipped or leased, in its share;
    with `unreached_only`, only those no person has ranked or holds (gold tasks always: they
    measure the judge)."""
    conditions: list[Any] = [
        RankingTask.project_id == project_id,
        RankingTask.status == TaskStatus.open,
        ~_done_by_user(),
    ]
    if share < 1:
        draw = (
            cast(RankingTask.id, BigInteger) * _SHARE_MULTIPLIER + judge_id * _JUDGE_MULTIPLIER
        ) % SHARE_MODULUS
        conditions.append(draw < int(share * SHARE_MODULUS))
    if unreached_only:
        conditions.append(
            RankingTask.gold | ((RankingTask.annotations_done == 0) & (_leases(live=True) == 0))
        )
    return conditions


def judge_candidate(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    judge_id: int,
    share: float,
    unreached_only: bool,
    now: datetime,
) -> int | None:
    """The oldest task the judge may lease, or None. Not locked: a judge's lease takes no
    slot, and the judge's own leasing is serialised by `lock_user` on its users row."""
    conditions = _judge_eligible(
        project_id=project_id,
        user_id=user_id,
        judge_id=judge_id,
        share=share,
        unreached_only=unreached_only,
    )
    query = select(RankingTask.id).where(*conditions).order_by(RankingTask.id).limit(1)
    return session.scalar(query, {"user_id": user_id, "now": now})


def count_judge_candidates(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    judge_id: int,
    share: float,
    unreached_only: bool,
    now: datetime,
) -> int:
    """How many tasks the judge could still lease (its progress' "remaining")."""
    conditions = _judge_eligible(
        project_id=project_id,
        user_id=user_id,
        judge_id=judge_id,
        share=share,
        unreached_only=unreached_only,
    )
    query = select(func.count()).select_from(RankingTask).where(*conditions)
    return int(session.scalar(query, {"user_id": user_id, "now": now}) or 0)


_LEASE_COUNT = (
    select(func.count())
    .select_from(Assignment)
    .join(RankingTask, RankingTask.id == Assignment.task_id)
    .where(
        Assignment.user_id == bindparam("user_id"),
        RankingTask.project_id == bindparam("project_id"),
    )
)


def lease_count(session: Session, *, project_id: int, user_id: int) -> int:
    """How many leases the user has ever had in the project (any state): the number of the
    next lease, which seeds its gold draw."""
    return int(session.scalar(_LEASE_COUNT, {"project_id": project_id, "user_id": user_id}) or 0)


def slot_state(session: Session, *, task_id: int, user_id: int, now: datetime) -> Any:
    """A fresh read of a locked task: status, done, required, live and stale leases, done_by.

    On PostgreSQL (READ COMMITTED) a new statement sees every transaction that held the task's
    lock before us, which the locking statement's older snapshot may not.
    """
    return session.execute(_SLOT_STATE, {"task_id": task_id, "user_id": user_id, "now": now}).one()


_SLOT_STATE = select(
    RankingTask.status,
    RankingTask.annotations_done,
    RankingTask.required_annotations,
    _leases(live=True).label("live"),
    _leases(live=False).label("stale"),
    _done_by_user().label("done_by_user"),
).where(RankingTask.id == bindparam("task_id"))


def _expire_unlocked_leases(*conditions: Any) -> Any:
    """UPDATE marking the leased assignments matching `conditions` expired, skipping rows
    another transaction holds: a lease whose row is locked is being submitted right now (its
    holder checked it in time), and waiting for it could close a lock cycle."""
    unlocked = (
        select(Assignment.id)
        .where(Assignment.state == AssignmentState.leased, *conditions)
        .with_for_update(skip_locked=True, key_share=True)
        .scalar_subquery()
    )
    return (
        update(Assignment)
        .where(Assignment.id.in_(unlocked))
        .values(state=AssignmentState.expired, finished_at=bindparam("now"))
        .execution_options(synchronize_session="fetch")
    )


_EXPIRE_STALE_LEASES = _expire_unlocked_leases(
    Assignment.task_id == bindparam("stale_task_id"),  # not "task_id": a column of the UPDATE
    Assignment.expires_at <= bindparam("now"),
    _HUMAN_LEASE,  # as `slot_state` counts them; a judge expires its own
)


def expire_stale_leases(session: Session, *, task_id: int, now: datetime) -> int:
    """Mark the task's expired leases so; returns how many. One being submitted is left
    alone: its slot is not free until that submit ends."""
    result = session.execute(_EXPIRE_STALE_LEASES, {"stale_task_id": task_id, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


_LOCK_OWN_LEASE = (
    select(Assignment, RankingTask)
    .join(RankingTask, RankingTask.id == Assignment.task_id)
    .where(Assignment.task_id == bindparam("task_id"), Assignment.user_id == bindparam("user_id"))
    .order_by(Assignment.id.desc())
    .limit(1)
    .with_for_update(of=Assignment, key_share=True)
    .execution_options(populate_existing=True)
)


def lock_own_lease(
    session: Session, *, task_id: int, user_id: int
) -> tuple[Assignment, RankingTask] | None:
    """The user's latest assignment on the task, locked (a second submit of the same lease
    waits, then reads it submitted), with the task as read, not locked: a submit locks the
    task only for its last statements (`record_annotation`)."""
    row = session.execute(_LOCK_OWN_LEASE, {"task_id": task_id, "user_id": user_id}).one_or_none()
    return None if row is None else (row[0], row[1])


_COMPLETES = (RankingTask.annotations_done + 1 >= RankingTask.required_annotations) & (
    RankingTask.gold == false()  # a gold task counts its answers but never completes
)
_RECORD_ANNOTATION = (
    update(RankingTask)
    .where(RankingTask.id == bindparam("task_id"), RankingTask.status == TaskStatus.open)
    .values(
        annotations_done=RankingTask.annotations_done + 1,
        status=case(
            (
                _COMPLETES,
                literal(TaskStatus.complete, RankingTask.status.type),
            ),
            else_=RankingTask.status,
        ),
        completed_at=case(
            (
                _COMPLETES,
                bindparam("now", type_=UTCDateTime()),
            ),
            else_=RankingTask.completed_at,
        ),
    )
    .returning(RankingTask.status, RankingTask.gold)
    .execution_options(synchronize_session="fetch")  # a loaded task object sees the new counts
)


def record_annotation(
    session: Session, *, task_id: int, now: datetime
) -> tuple[TaskStatus, bool] | None:
    """One more annotation of an open task, completing it at its required count (a gold task
    never completes); the task's status after, or None when the task is no longer open. The
    row stays locked until commit, so it is the submit's last lock but the samples' Elo:
    submits of one task by different annotators wait for each other only for these last
    statements. Also returns whether the task is gold now: an admin may have marked or
    unmarked it since the submit read it (marking locks the row, so this read is current)."""
    row = session.execute(_RECORD_ANNOTATION, {"task_id": task_id, "now": now}).one_or_none()
    return None if row is None else (TaskStatus(row[0]), bool(row[1]))


def set_ranking_gold(session: Session, *, ranking_id: int, gold: bool) -> None:
    """The ranking's comparisons follow a gold mark that changed while it was submitted."""
    session.execute(
        update(Comparison)
        .where(Comparison.ranking_id == ranking_id)
        .values(gold=gold)
        .execution_options(synchronize_session=False)
    )


_EXPIRE_LEASES = _expire_unlocked_leases(Assignment.id.in_(bindparam("lease_ids", expanding=True)))


def expire_leases(session: Session, *, lease_ids: Sequence[int], now: datetime) -> None:
    """Mark the user's own expired leases so, but not one a submit in another tab holds (it
    checked the lease in time, and will wait for this user's lock: waiting here deadlocks)."""
    session.execute(_EXPIRE_LEASES, {"lease_ids": list(lease_ids), "now": now})


# Tasks


def get_task(session: Session, task_id: int) -> RankingTask | None:
    return session.get(RankingTask, task_id)


_TASK_SAMPLES = (
    select(Sample.id, Sample.policy_version_id, Sample.text)
    .join(TaskSample, TaskSample.sample_id == Sample.id)
    .where(TaskSample.task_id == bindparam("task_id"))
    .order_by(TaskSample.position)
)


def task_samples(session: Session, task_id: int) -> list[tuple[int, int, str]]:
    """(sample id, policy version id, text) of the task's samples, by position."""
    rows = session.execute(_TASK_SAMPLES, {"task_id": task_id})
    return [(int(i), int(v), str(t)) for i, v, t in rows]


_TASK_VIEW_ROWS = (
    select(
        RankingTask.project_id,
        Prompt.text,
        Prompt.messages,
        RankingTask.gold,
        Sample.id,
        Sample.text,
    )
    .join(Prompt, Prompt.id == RankingTask.prompt_id)
    .join(TaskSample, TaskSample.task_id == RankingTask.id)
    .join(Sample, Sample.id == TaskSample.sample_id)
    .where(RankingTask.id == bindparam("task_id"))
    .order_by(TaskSample.position)
)


def task_view_rows(session: Session, task_id: int) -> list[Any]:
    """What the annotator sees, in one query: (project_id, prompt text, prompt messages,
    gold, sample id, sample text) per sample, by position (gold: the view shows no judge's
    hints on a gold task)."""
    return list(session.execute(_TASK_VIEW_ROWS, {"task_id": task_id}))


# Rankings and what they write


def _insert_many(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """One INSERT … VALUES (…), (…) round trip for many rows, compiled once and cached.

    RETURNING is what makes SQLAlchemy batch an executemany this way ("insertmanyvalues");
    without it psycopg sends a statement per row, and `.values(rows)` recompiles every time.
    """
    session.execute(stmt.returning(literal_column("1")), rows)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# PostgreSQL: a ranking's pairs as five arrays, one short statement that psycopg prepares once.
# The VALUES list SQLAlchemy builds for 36 rows has ~400 parameters: psycopg re-parses such a
# statement in Python on every call (it caches only short ones), which was the costliest line
# of a submit.
_PG_INSERT_COMPARISONS = text(
    """
    INSERT INTO comparisons (project_id, ranking_id, task_id, prompt_id, user_id, gold,
        winner_id, loser_id, winner_version_id, loser_version_id, tie, winner_position,
        loser_position, created_at, source)
    SELECT :project_id, :ranking_id, :task_id, :prompt_id, :user_id, :gold, p.winner_id,
        p.loser_id, p.winner_version_id, p.loser_version_id, p.tie, p.winner_position,
        p.loser_position, :created_at, :source
    FROM unnest(CAST(:winner_ids AS integer[]), CAST(:loser_ids AS integer[]),
        CAST(:winner_version_ids AS integer[]), CAST(:loser_version_ids AS integer[]),
        CAST(:ties AS boolean[]), CAST(:winner_positions AS integer[]),
        CAST(:loser_positions AS integer[]))
        AS p(winner_id, loser_id, winner_version_id, loser_version_id, tie, winner_position,
            loser_position)
    """
).bindparams(bindparam("created_at", type_=UTCDateTime()))


def insert_comparisons(
    session: Session,
    *,
    project_id: int,
    ranking_id: int,
    task_id: int,
    prompt_id: int,
    user_id: int,
    created_at: datetime,
    pairs: Sequence[tuple[int, int, int, int, bool, int | None, int | None]],
    gold: bool = False,
    source: str = "human",
) -> None:
    """A ranking's comparisons; `pairs` are (winner, loser, winner version, loser version, tie,
    winner's card position, loser's card position); `source` 'ai' for a judge's."""
    if not pairs:
        return
    common = {
        "project_id": project_id,
        "ranking_id": ranking_id,
        "task_id": task_id,
        "prompt_id": prompt_id,
        "user_id": user_id,
        "gold": gold,
        "created_at": created_at,
        "source": source,
    }
    if _is_postgresql(session):
        columns = zip(*pairs, strict=True)
        winners, losers, winner_versions, loser_versions, ties, winner_pos, loser_pos = columns
        session.execute(
            _PG_INSERT_COMPARISONS,
            {
                **common,
                "winner_ids": list(winners),
                "loser_ids": list(losers),
                "winner_version_ids": list(winner_versions),
                "loser_version_ids": list(loser_versions),
                "ties": list(ties),
                "winner_positions": list(winner_pos),
                "loser_positions": list(loser_pos),
            },
        )
        return
    names = (
        "winner_id",
        "loser_id",
        "winner_version_id",
        "loser_version_id",
        "tie",
        "winner_position",
        "loser_position",
    )
    _insert_many(
        session,
        insert(Comparison),
        [{**common, **dict(zip(names, pair, strict=True))} for pair in pairs],
    )


def _insert_ignoring_conflicts(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(model)
    _insert_many(session, stmt.on_conflict_do_nothing(), rows)


def insert_flags(session: Session, rows: list[dict[str, Any]]) -> None:
    """A sample the user flagged before (in another task) keeps its first flag."""
    if rows:
        _insert_ignoring_conflicts(session, SampleFlag, rows)


# Create-or-lock in one statement: ON CONFLICT DO UPDATE locks an existing row and RETURNING
# gives its current Elo (the no-op SET keeps it), in the ids' order.
_PG_LOCK_SAMPLE_RATINGS = text(
    """
    INSERT INTO sample_ratings (sample_id, elo, elo_comparisons, bt_comparisons, updated_at)
    SELECT id, :elo, 0, 0, :now FROM unnest(CAST(:ids AS integer[])) AS id ORDER BY id
    ON CONFLICT (sample_id) DO UPDATE SET elo = sample_ratings.elo
    RETURNING sample_id, elo
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def lock_elo(session: Session, sample_ids: Iterable[int], now: datetime) -> dict[int, float]:
    """The samples' Elo, rows created when missing and locked in id order (no deadlocks when
    two tasks share a sample)."""
    ids = sorted(set(sample_ids))
    if _is_postgresql(session):
        rows = session.execute(_PG_LOCK_SAMPLE_RATINGS, {"ids": ids, "elo": INITIAL, "now": now})
        return {int(sample_id): float(elo) for sample_id, elo in rows}
    _insert_ignoring_conflicts(
        session,
        SampleRating,
        [{"sample_id": i, "elo": INITIAL, "elo_comparisons": 0, "updated_at": now} for i in ids],
    )
    return dict(session.execute(_LOCK_ELO, {"ids": ids}).all())


_LOCK_ELO = (
    select(SampleRating.sample_id, SampleRating.elo)
    .where(SampleRating.sample_id.in_(bindparam("ids", expanding=True)))
    .order_by(SampleRating.sample_id)
    .with_for_update(key_share=True)
)


_PG_STORE_ELO = text(
    """
    UPDATE sample_ratings AS r
    SET elo = v.elo, elo_comparisons = r.elo_comparisons + v.n, updated_at = :now
    FROM unnest(CAST(:ids AS integer[]), CAST(:elos AS double precision[]),
        CAST(:counts AS integer[])) AS v(sample_id, elo, n)
    WHERE r.sample_id = v.sample_id
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def store_elo(
    session: Session, elo: dict[int, float], comparisons: dict[int, int], now: datetime
) -> None:
    """All of a ranking's samples in one UPDATE rather than one per sample (PostgreSQL: from
    arrays, a short prepared statement; elsewhere CASE by id)."""
    if _is_postgresql(session):
        ids = list(elo)
        session.execute(
            _PG_STORE_ELO,
            {
                "ids": ids,
                "elos": [elo[i] for i in ids],
                "counts": [comparisons.get(i, 0) for i in ids],
                "now": now,
            },
        )
        return
    session.execute(
        update(SampleRating)
        .where(SampleRating.sample_id.in_(list(elo)))
        .values(
            elo=case(elo, value=SampleRating.sample_id),
            elo_comparisons=SampleRating.elo_comparisons
            + case(comparisons, value=SampleRating.sample_id, else_=0),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


_RANKING_COUNTS = select(
    func.coalesce(func.sum(case((Ranking.created_at >= bindparam("since"), 1), else_=0)), 0),
    func.count(),
).where(Ranking.user_id == bindparam("user_id"))


def ranking_counts(session: Session, *, user_id: int, since: datetime) -> tuple[int, int]:
    """(rankings since `since`, rankings in total) by the user; one index range scan."""
    row = session.execute(_RANKING_COUNTS, {"user_id": user_id, "since": since}).one()
    return int(row[0]), int(row[1])
