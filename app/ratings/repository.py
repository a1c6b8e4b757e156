"""Queries for ratings: the comparisons a fit uses, the debounce marker, the ratings tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import numpy as np
from sqlalchemy import (
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from app.models import (
    AnnotatorExclusion,
    AnnotatorReliability,
    Comparison,
    PolicyRating,
    PolicyVersion,
    Project,
    ProjectMember,
    Prompt,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SampleRating,
    User,
)

# Debounce marker (projects.ratings_dirty_since)


# PostgreSQL advisory lock (class, project id) that orders submits against the job's claim.
RATINGS_MARKER_LOCK = 0x52_4C_52  # "RLR"


def _marker_lock(session: Session, project_id: int, *, shared: bool) -> None:
    """Submits hold it shared until they commit; the job's claim takes it exclusively, so the
    claim waits for every submit that saw the marker set, and their comparisons are committed
    before the job loads. Held in the lock manager rather than on the project row: a share lock
    on one hot row rewrites it (a new multixact) on every submit. SQLite serialises writers."""
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(
        text(f"SELECT {function}(:lock_class, :project_id)"),
        {"lock_class": RATINGS_MARKER_LOCK, "project_id": project_id},
    )


# Another class: stores of a fit wait for each other, never for the submits' marker lock.
RATINGS_STORE_LOCK = 0x52_4C_53  # "RLS"


def lock_store(session: Session, project_id: int) -> None:
    """Serialise the project's fit stores until commit (the job, an admin's recompute, an
    exclusion): each checks the newest stored fit and replaces the rows; interleaved, the
    second one's inserts collided with the first's. SQLite serialises writers already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text("SELECT pg_advisory_xact_lock(:lock_class, :project_id)"),
        {"lock_class": RATINGS_STORE_LOCK, "project_id": project_id},
    )


def mark_dirty(session: Session, *, project_id: int, now: datetime, stale_before: datetime) -> bool:
    """Set the marker; True when this call set it, so the caller sends the one job.

    Only the first submit after a run writes the project row (later ones match nothing, so the
    row does not serialise submits). A marker older than `stale_before` is taken over as if
    clear: its job was lost (broker down, worker killed), and this re-sends it. A running job's
    claim (see claim_dirty) always reads as that old, so the first submit during a run sets the
    marker again and sends the next job. The marker is read after the shared lock is granted:
    a claim that committed first reads as claimed here.
    """
    _marker_lock(session, project_id, shared=True)
    result = session.execute(
        update(Project)
        .where(
            Project.id == project_id,
            or_(Project.ratings_dirty_since.is_(None), Project.ratings_dirty_since < stale_before),
        )
        .values(ratings_dirty_since=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim_dirty(
    session: Session, project_id: int, *, claim: datetime, live_claims: tuple[datetime, datetime]
) -> bool:
    """Replace the marker with this job's `claim`; True when it was set and not another job's
    claim still within `live_claims` (oldest, newest): a duplicate message during a run, or a
    run that already covered these rankings, does nothing. The marker stays set (the leaderboard
    reads it as pending) until release_claim, after the fit is stored.

    Commit right after: submits queue behind the exclusive lock until then."""
    _marker_lock(session, project_id, shared=False)
    oldest, newest = live_claims
    result = session.execute(
        update(Project)
        .where(
            Project.id == project_id,
            Project.ratings_dirty_since.is_not(None),
            ~Project.ratings_dirty_since.between(oldest, newest),
        )
        .values(ratings_dirty_since=claim)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_claim(session: Session, project_id: int, *, claim: datetime) -> bool:
    """Clear the marker if it still holds `claim`; False when a submit set it again meanwhile
    (its job follows). No lock needed: a submit re-setting it holds the row until it commits,
    and this UPDATE waits for that and then re-reads the marker."""
    result = session.execute(
        update(Project)
        .where(Project.id == project_id, Project.ratings_dirty_since == claim)
        .values(ratings_dirty_since=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def dirty_since(session: Session, project_id: int) -> datetime | None:
    return session.scalar(select(Project.ratings_dirty_since).where(Project.id == project_id))


# Whose rankings count: people, judges (AI), or both

Raters = Literal["human", "ai", "all"]
RATERS: tuple[str, ...] = get_args(Raters)


def figure_raters(session: Session, project_id: int) -> Raters:
    """Whose rankings the project's human figures (ratings, reliability, agreement, position
    bias, planner) count: people only, unless an admin counts judges in
    (projects.judges_in_human_figures)."""
    include = session.scalar(
        select(Project.judges_in_human_figures).where(Project.id == project_id)
    )
    return "all" if include else "human"


def source_is(column: InstrumentedAttribute[str], raters: Raters) -> ColumnElement[bool]:
    """`column` (rankings.source or comparisons.source) matches `raters`."""
    return true() if raters == "all" else column == raters


def in_human_figures(column: InstrumentedAttribute[str], project_id: int) -> ColumnElement[bool]:
    """SQL: a row (by its rankings.source, comparisons.source or users.kind) counts in the
    project's human figures: a person's, or a judge's when the admin counts judges in. The
    setting is read in the query itself, so callers need no session."""
    included = (
        select(Project.judges_in_human_figures).where(Project.id == project_id).scalar_subquery()
    )
    return or_(column == "human", included == true())


def kind_is(raters: Raters) -> ColumnElement[bool]:
    """users.kind matches `raters` (judges own users rows of kind 'model')."""
    if raters == "all":
        return true()
    return User.kind == ("human" if raters == "human" else "model")


# Comparisons


@dataclass(frozen=True)
class ComparisonArrays:
    """A project's comparisons as columns (n,), ordered by id (Elo replays them in order)."""

    user: np.ndarray
    ranking: np.ndarray
    winner: np.ndarray
    loser: np.ndarray
    winner_version: np.ndarray
    loser_version: np.ndarray
    tie: np.ndarray
    task: np.ndarray | None = None
    uniform: np.ndarray | None = None
    """(n,) bool: the task was drawn uniformly (selection_reason 'uniform'), not chosen by
    active selection. None: not loaded (all uniform)."""

    def __len__(self) -> int:
        return len(self.winner)

    def where(self, mask: np.ndarray) -> ComparisonArrays:
        columns: dict[str, Any] = {
            k: None if v is None else v[mask] for k, v in self.__dict__.items()
        }
        return ComparisonArrays(**columns)


def load_comparisons(
    session: Session,
    project_id: int,
    *,
    include_excluded: bool,
    include_flagged: bool = False,
    raters: Raters | None = None,
) -> ComparisonArrays:
    """The rows a fit uses. Same rules as training snapshots (app.rounds.snapshots): excluded
    annotators' and flagged samples' comparisons are left out unless asked for; gold tasks'
    comparisons (which measure annotators) always are. `raters` None: the project's human
    figures' (figure_raters)."""
    raters = raters or figure_raters(session, project_id)
    query = (
        select(
            Comparison.user_id,
            Comparison.ranking_id,
            Comparison.winner_id,
            Comparison.loser_id,
            Comparison.winner_version_id,
            Comparison.loser_version_id,
            Comparison.task_id,
            Comparison.tie,
            RankingTask.selection_reason == "uniform",
        )
        .join(RankingTask, RankingTask.id == Comparison.task_id)
        .where(
            Comparison.project_id == project_id,
            Comparison.gold == false(),
            source_is(Comparison.source, raters),
        )
    )
    if not include_excluded:
        query = query.where(
            ~exists(
                select(AnnotatorExclusion.user_id).where(
                    AnnotatorExclusion.project_id == project_id,
                    AnnotatorExclusion.user_id == Comparison.user_id,
                )
            )
        )
    if not include_flagged:
        query = query.where(
            ~exists(
                select(SampleFlag.id).where(
                    SampleFlag.kind == "harmful",  # a judge's suggestion is no final flag
                    or_(
                        SampleFlag.sample_id == Comparison.winner_id,
                        SampleFlag.sample_id == Comparison.loser_id,
                    ),
                )
            )
        )
    rows = session.execute(query.order_by(Comparison.id)).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * 9
    user, ranking, winner, loser, winner_version, loser_version, task = (
        np.asarray(c, dtype=np.int64) for c in columns[:7]
    )
    return ComparisonArrays(
        user,
        ranking,
        winner,
        loser,
        winner_version,
        loser_version,
        np.asarray(columns[7], bool),
        task=task,
        uniform=np.asarray(columns[8], bool),
    )


def gold_comparisons(
    session: Session, project_id: int, *, raters: Raters | None = None
) -> list[tuple[int, int, int, int, int, bool, list[list[int]] | None, int | None]]:
    """(user, ranking, task, winner, loser, tie, the task's gold groups, its known-bad sample)
    of every gold task's comparison, excluded annotators' too: gold measures annotators.
    `raters` None: the project's human figures'."""
    raters = raters or figure_raters(session, project_id)
    rows = session.execute(
        select(
            Comparison.user_id,
            Comparison.ranking_id,
            Comparison.task_id,
            Comparison.winner_id,
            Comparison.loser_id,
            Comparison.tie,
            RankingTask.gold_groups,
            RankingTask.gold_bad_sample_id,
        )
        .join(RankingTask, RankingTask.id == Comparison.task_id)
        .where(
            Comparison.project_id == project_id,
            Comparison.gold == true(),
            source_is(Comparison.source, raters),
        )
        .order_by(Comparison.id)
    ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def rankings_by_task(
    session: Session, project_id: int, *, raters: Raters | None = None
) -> dict[int, dict[int, list[list[int]]]]:
    """{task: {annotator: groups}} of every ranking with groups (none-usable answers have none);
    `raters` None: the project's human figures'."""
    raters = raters or figure_raters(session, project_id)
    rows = session.execute(
        select(Ranking.task_id, Ranking.user_id, Ranking.groups)
        .where(
            Ranking.project_id == project_id,
            Ranking.none_usable.is_(False),
            source_is(Ranking.source, raters),
        )
        .order_by(Ranking.task_id, Ranking.user_id)
    ).all()
    out: dict[int, dict[int, list[list[int]]]] = {}
    for task_id, user_id, groups in rows:
        if groups:
            out.setdefault(task_id, {})[user_id] = groups
    return out


def recent_prompt_rankings(
    session: Session, project_id: int, *, limit: int
) -> list[tuple[int, str, list[list[list[int]]], set[int]]]:
    """(prompt id, text, rankings, annotators) of the `limit` most recently ranked prompts,
    included annotators only (people only unless judges count in human figures)."""
    excluded = excluded_users(session, project_id)
    raters = figure_raters(session, project_id)
    latest = (
        select(Comparison.prompt_id, func.max(Comparison.id).label("last"))
        .where(Comparison.project_id == project_id, source_is(Comparison.source, raters))
        .group_by(Comparison.prompt_id)
        .order_by(func.max(Comparison.id).desc())
        .limit(limit)
        .subquery()
    )
    prompts = session.execute(
        select(Prompt.id, Prompt.text)
        .join(latest, latest.c.prompt_id == Prompt.id)
        .order_by(latest.c.last.desc())
    ).all()
    if not prompts:
        return []
    rows = session.execute(
        select(RankingTask.prompt_id, Ranking.user_id, Ranking.groups)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .where(
            RankingTask.prompt_id.in_([p for p, _ in prompts]),
            Ranking.none_usable.is_(False),
            source_is(Ranking.source, raters),
        )
    ).all()
    by_prompt: dict[int, tuple[list[list[list[int]]], set[int]]] = {}
    for prompt_id, user_id, groups in rows:
        if groups and user_id not in excluded:
            entry = by_prompt.setdefault(prompt_id, ([], set()))
            entry[0].append(groups)
            entry[1].add(user_id)
    return [(p, text, *by_prompt.get(p, ([], set()))) for p, text in prompts]


def sample_details(session: Session, sample_ids: list[int]) -> dict[int, tuple[str, int, int]]:
    """{sample: (text, version id, version number)}."""
    if not sample_ids:
        return {}
    rows = session.execute(
        select(Sample.id, Sample.text, PolicyVersion.id, PolicyVersion.number)
        .join(PolicyVersion, PolicyVersion.id == Sample.policy_version_id)
        .where(Sample.id.in_(sample_ids))
    ).all()
    return {sid: (text, vid, number) for sid, text, vid, number in rows}


# Members


def excluded_users(session: Session, project_id: int) -> set[int]:
    return set(
        session.scalars(
            select(AnnotatorExclusion.user_id).where(AnnotatorExclusion.project_id == project_id)
        )
    )


def annotators(session: Session, project_id: int) -> list[tuple[int, str, str, bool | None]]:
    """(user id, username, display name, excluded) of members and of anyone who ranked in the
    project; excluded is None for a former member who is not excluded (their rankings still
    count), True for an excluded one. Judges (users of kind 'model') only when they count in
    human figures."""
    excluded = excluded_users(session, project_id)
    kind = kind_is(figure_raters(session, project_id))
    member_rows = [
        (uid, name, display, uid in excluded)
        for uid, name, display in session.execute(
            select(User.id, User.username, User.display_name)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id, kind)
        ).all()
    ]
    seen = {row[0] for row in member_rows}
    former = session.execute(
        select(User.id, User.username, User.display_name).where(
            User.id.in_(select(Ranking.user_id).where(Ranking.project_id == project_id)),
            User.id.not_in(seen) if seen else true(),
            kind,
        )
    ).all()
    out: list[tuple[int, str, str, bool | None]] = [
        (uid, name, display, bool(ex)) for uid, name, display, ex in member_rows
    ]
    out += [
        (uid, name, display, True if uid in excluded else None) for uid, name, display in former
    ]
    return sorted(out, key=lambda row: row[1])


def is_annotator(session: Session, *, project_id: int, user_id: int) -> bool:
    """A member, or a former member whose rankings are still here."""
    if session.get(ProjectMember, (project_id, user_id)) is not None:
        return True
    ranked = select(Ranking.id).where(Ranking.project_id == project_id, Ranking.user_id == user_id)
    return bool(session.scalar(select(exists(ranked))))


def exclusion(session: Session, *, project_id: int, user_id: int) -> AnnotatorExclusion | None:
    return session.get(AnnotatorExclusion, (project_id, user_id))


# Versions and stored ratings


def versions(session: Session, project_id: int) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.project_id == project_id)
            .order_by(PolicyVersion.number)
        )
    )


def policy_ratings(session: Session, project_id: int) -> dict[int, PolicyRating]:
    rows = session.scalars(
        select(PolicyRating)
        .join(PolicyVersion, PolicyVersion.id == PolicyRating.policy_version_id)
        .where(PolicyVersion.project_id == project_id)
    )
    return {row.policy_version_id: row for row in rows}


def newest_fit(session: Session, project_id: int) -> datetime | None:
    """Time of the data behind the stored fit (None before the first fit)."""
    policy = session.scalar(
        select(func.max(PolicyRating.fitted_at))
        .join(PolicyVersion, PolicyVersion.id == PolicyRating.policy_version_id)
        .where(PolicyVersion.project_id == project_id)
    )
    sample = session.scalar(
        select(func.max(SampleRating.bt_fitted_at))
        .join(Sample, Sample.id == SampleRating.sample_id)
        .where(Sample.project_id == project_id)
    )
    return max((t for t in (policy, sample) if t is not None), default=None)


def replace_policy_ratings(session: Session, project_id: int, rows: list[dict[str, Any]]) -> None:
    """The project's policy_ratings become exactly `rows` (versions no longer compared, e.g.
    after an exclusion, lose theirs)."""
    version_ids = select(PolicyVersion.id).where(PolicyVersion.project_id == project_id)
    session.execute(
        delete(PolicyRating).where(PolicyRating.policy_version_id.in_(version_ids)),
        execution_options={"synchronize_session": False},
    )
    if rows:
        session.execute(insert(PolicyRating), rows)


def store_sample_ratings(
    session: Session, project_id: int, rows: list[dict[str, Any]], fitted_at: datetime
) -> None:
    """Write the Bradley-Terry columns of sample_ratings (Elo columns belong to the submit)
    and clear them on the project's samples the fit no longer covers."""
    fitted = {row["sample_id"] for row in rows}
    existing = dict(
        session.execute(
            select(SampleRating.sample_id, SampleRating.bt_rating.is_not(None))
            .join(Sample, Sample.id == SampleRating.sample_id)
            .where(Sample.project_id == project_id)
        ).all()
    )
    cleared = {"bt_rating": None, "bt_lower": None, "bt_upper": None, "bt_comparisons": 0}
    stale = [
        {"sample_id": sid, **cleared, "bt_fitted_at": fitted_at}
        for sid, has_rating in existing.items()
        if has_rating and sid not in fitted
    ]
    # In sample id order, the order a submit locks its samples' rows in (lock_elo): rows of
    # one task updated in two orders by the fit and a submit could deadlock.
    updates = sorted(
        [row for row in rows if row["sample_id"] in existing] + stale,
        key=lambda row: row["sample_id"],
    )
    inserts = [{**row, "updated_at": fitted_at} for row in rows if row["sample_id"] not in existing]
    if updates:
        session.execute(update(SampleRating), updates)
    if inserts:
        session.execute(insert(SampleRating), inserts)


# Annotator reliability


def reliability_rows(session: Session, project_id: int) -> dict[int, AnnotatorReliability]:
    rows = session.scalars(
        select(AnnotatorReliability).where(AnnotatorReliability.project_id == project_id)
    )
    return {row.user_id: row for row in rows}


def replace_reliability(session: Session, project_id: int, rows: list[dict[str, Any]]) -> None:
    """The project's annotator_reliability rows become exactly `rows`."""
    session.execute(
        delete(AnnotatorReliability).where(AnnotatorReliability.project_id == project_id),
        execution_options={"synchronize_session": False},
    )
    if rows:
        session.execute(
            insert(AnnotatorReliability), [{**r, "project_id": project_id} for r in rows]
        )


def has_selected_tasks(session: Session, project_id: int) -> bool:
    """Whether active selection chose any of the project's tasks (not drawn uniformly)."""
    chosen = select(RankingTask.id).where(
        RankingTask.project_id == project_id, RankingTask.selection_reason != "uniform"
    )
    return bool(session.scalar(select(exists(chosen))))
