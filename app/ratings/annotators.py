"""The leaderboard's annotator table: one page of a project's annotators, sorted, with their
agreement, fitted reliability, gold accuracy, flag and exclusion.

Built for projects with thousands of annotators: the annotator list, its counts and the
reliability columns are sorted and paged in SQL (LIMIT/OFFSET over one query), and the figures
that need the rankings themselves (agreement with consensus, the outlier test) are computed for
the page's rows only. Sorting by agreement is the exception: it needs every annotator's value,
so it reads every ranking (O(rankings), as the whole agreement report does).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean
from typing import Any, Literal, get_args

import numpy as np
from sqlalchemy import Float, and_, case, cast, false, func, select, union
from sqlalchemy.orm import Session, aliased

from app.errors import InvalidInput
from app.models import (
    AnnotatorExclusion,
    AnnotatorReliability,
    Comparison,
    ProjectMember,
    Ranking,
    SampleFlag,
    User,
)
from app.models.annotator import FLAG_CHANCE, FLAG_REVERSED
from app.projects.service import require_project
from app.ratings import repository
from app.ratings.agreement import (
    Groups,
    _scores_to_groups,
    outlier_annotators,
    pairwise_agreement,
)
from app.ratings.bradley_terry import consensus_scores, fit_ratings

SortColumn = Literal[
    "name", "rankings", "shared_tasks", "agreement", "reliability", "gold", "weight", "flag"
]
Order = Literal["asc", "desc"]
SORT_COLUMNS: tuple[str, ...] = get_args(SortColumn)
DEFAULT_ORDER: dict[str, Order] = {
    "name": "asc",
    "rankings": "desc",
    "shared_tasks": "desc",
    "agreement": "asc",
    "reliability": "asc",
    "gold": "asc",
    "weight": "asc",
    "flag": "desc",
}
"""The order a column's header link sorts by first: the most telling rows on top (the least
agreeing or reliable annotators, the flagged ones, the busiest)."""
PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
STATUS_MEMBER, STATUS_FORMER, STATUS_EXCLUDED = "member", "former member", "excluded"
WILSON_Z = 1.959963984540054  # two-sided 95%


def wilson_interval(correct: int, answered: int, z: float = WILSON_Z) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: unlike the normal approximation it stays
    inside [0, 1] and is not empty at 0 or n correct (Wilson 1927)."""
    if answered <= 0:
        return 0.0, 1.0
    p = correct / answered
    denominator = 1 + z * z / answered
    centre = (p + z * z / (2 * answered)) / denominator
    half = z * math.sqrt(p * (1 - p) / answered + z * z / (4 * answered * answered))
    half /= denominator
    low = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-17
    high = 1.0 if correct == answered else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Reliability:
    """The stored Crowd-BT fit of one annotator (AnnotatorReliability)."""

    reliability: float
    lower: float
    upper: float
    weight: float
    flag: str | None
    evidence: str | None
    comparisons: int
    gold_answered: int
    gold_correct: int
    fitted_at: datetime

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None

    @property
    def gold_interval(self) -> tuple[float, float] | None:
        if not self.gold_answered:
            return None
        return wilson_interval(self.gold_correct, self.gold_answered)


@dataclass(frozen=True)
class AnnotatorTableRow:
    user_id: int
    username: str
    display_name: str
    member: bool
    excluded: bool
    exclusion_reason: str | None
    rankings: int
    """Tasks ranked ('none usable' answers not counted)."""
    shared_tasks: int
    """Tasks this annotator ranked together with at least one included other annotator."""
    agreement: float | None
    """Mean pairwise agreement with the consensus of the included others on shared tasks."""
    log_m: float | None
    """ln M of the outlier test when flagged, else None."""
    reliability: Reliability | None
    """None before the ratings job fitted this annotator ("not fitted yet")."""

    @property
    def status(self) -> str:
        if self.excluded:
            return STATUS_EXCLUDED
        return STATUS_MEMBER if self.member else STATUS_FORMER

    @property
    def flag(self) -> str | None:
        return self.reliability.flag if self.reliability else None

    @property
    def outlier(self) -> bool:
        return self.log_m is not None


@dataclass(frozen=True)
class AnnotatorTable:
    project_id: int
    rows: list[AnnotatorTableRow]
    total: int
    page: int
    """1-based, clamped to [1, pages]."""
    pages: int
    page_size: int
    sort: str
    order: str
    fitted_at: datetime | None
    """When the newest reliability fit of the project was stored; None before any."""
    flagged: int
    """Annotators flagged reversed or at chance and not excluded (over all pages)."""

    @property
    def default_order(self) -> Mapping[str, str]:
        """The order each column's header link sorts by first."""
        return DEFAULT_ORDER

    @property
    def first(self) -> int:
        """1-based index of the page's first row (0 for an empty table)."""
        return (self.page - 1) * self.page_size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def check_sort(sort: str, order: str | None) -> tuple[str, str]:
    """The sort column and order, validated against the whitelist (422 otherwise); a missing
    order is the column's default."""
    if sort not in SORT_COLUMNS:
        raise InvalidInput(
            f"Unknown sort column {sort!r}; one of {', '.join(SORT_COLUMNS)}",
            details={"field": "sort"},
        )
    if order is None:
        return sort, DEFAULT_ORDER[sort]
    if order not in ("asc", "desc"):
        raise InvalidInput("The order is asc or desc", details={"field": "order"})
    return sort, order


def annotator_table(
    session: Session,
    *,
    project_id: int,
    page: int = 1,
    sort: str = "name",
    order: str | None = None,
    page_size: int = PAGE_SIZE,
) -> AnnotatorTable:
    """One page of the project's annotators (members, and former members who ranked here).

    A page past the end shows the last page (a link kept from before a member left still
    lands somewhere); an unknown sort column or order is a 422. Ties in the sort key fall back
    to the name, then the user id, so paging never repeats or skips a row.
    """
    require_project(session, project_id)
    sort, order = check_sort(sort, order)
    if page < 1:
        raise InvalidInput("Pages are numbered from 1", details={"field": "page"})
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"The page size is between 1 and {MAX_PAGE_SIZE}", details={"field": "page_size"}
        )
    total = _count(session, project_id)
    pages = max(1, math.ceil(total / page_size))
    page = min(page, pages)
    rows = _rows(
        session, project_id, sort=sort, order=order, offset=(page - 1) * page_size, limit=page_size
    )
    return AnnotatorTable(
        project_id=project_id,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        page_size=page_size,
        sort=sort,
        order=order,
        fitted_at=session.scalar(
            select(func.max(AnnotatorReliability.fitted_at)).where(
                AnnotatorReliability.project_id == project_id
            )
        ),
        flagged=_flagged(session, project_id),
    )


def annotator_slice(
    session: Session, *, project_id: int, sort: str, order: str | None, offset: int, limit: int
) -> tuple[list[AnnotatorTableRow], int]:
    """`limit` annotators from `offset` in the sorted list, and how many there are in all
    (the API's pages; past the end: none)."""
    require_project(session, project_id)
    sort, order = check_sort(sort, order)
    rows = _rows(session, project_id, sort=sort, order=order, offset=offset, limit=limit)
    return rows, _count(session, project_id)


def _count(session: Session, project_id: int) -> int:
    people = _people(project_id)
    return int(session.scalar(select(func.count()).select_from(people)) or 0)


def _rows(
    session: Session, project_id: int, *, sort: str, order: str, offset: int, limit: int
) -> list[AnnotatorTableRow]:
    """The sorted slice, in SQL but for agreement. The figures that come from the rankings
    (counts, agreement, the outlier test) are computed for the slice's annotators only, from
    the rankings of their tasks; sorting by agreement computes it for everyone."""
    excluded = repository.excluded_users(session, project_id)
    query, key = _table_query(project_id, sort)
    if key is None:  # agreement: every annotator's value is needed to order them
        records = list(session.execute(query).all())
        figures = _figures(session, project_id, excluded=excluded, users=None)
        records.sort(key=lambda r: _name_key(r))
        records.sort(key=lambda r: _agreement_key(figures.get(r.user_id), order))
        records = records[offset : offset + limit]
    else:
        direction = key.asc() if order == "asc" else key.desc()
        ordered = query.order_by(key.is_(None), direction, _name_column(), User.id)
        records = list(session.execute(ordered.limit(limit).offset(offset)).all())
        figures = _figures(
            session, project_id, excluded=excluded, users={r.user_id for r in records}
        )
    outliers = _outliers(session, project_id, [r.user_id for r in records], excluded)
    return [_row(r, figures.get(r.user_id), outliers) for r in records]


# The query


def _people(project_id: int) -> Any:
    """Members, and anyone who ranked here (former members); judges only when they count in
    human figures."""
    return union(
        select(ProjectMember.user_id.label("user_id"))
        .join(User, User.id == ProjectMember.user_id)
        .where(
            ProjectMember.project_id == project_id,
            repository.in_human_figures(User.kind, project_id),
        ),
        select(Ranking.user_id.label("user_id")).where(
            Ranking.project_id == project_id,
            repository.in_human_figures(Ranking.source, project_id),
        ),
    ).subquery("people")


def _name_column() -> Any:
    return func.lower(func.coalesce(func.nullif(User.display_name, ""), User.username))


def _table_query(project_id: int, sort: str) -> tuple[Any, Any]:
    """The annotators with their exclusion and reliability (one row each), and the SQL
    expression to sort by (None for agreement, which is no column). Counting rankings for
    every annotator costs a pass over the project's rankings, so the counts join the query
    only to sort by them."""
    people = _people(project_id)
    member = aliased(ProjectMember)
    exclusion = aliased(AnnotatorExclusion)
    rel = aliased(AnnotatorReliability)
    query = (
        select(
            User.id.label("user_id"),
            User.username,
            User.display_name,
            member.user_id.is_not(None).label("member"),
            exclusion.user_id.is_not(None).label("excluded"),
            exclusion.reason.label("exclusion_reason"),
            rel.user_id.label("fitted_user"),
            rel.reliability,
            rel.lower,
            rel.upper,
            rel.weight,
            rel.flag,
            rel.evidence,
            rel.comparisons,
            rel.gold_answered,
            rel.gold_correct,
            rel.fitted_at,
        )
        .select_from(people)
        .join(User, User.id == people.c.user_id)
        .outerjoin(member, and_(member.project_id == project_id, member.user_id == User.id))
        .outerjoin(
            exclusion, and_(exclusion.project_id == project_id, exclusion.user_id == User.id)
        )
        .outerjoin(rel, and_(rel.project_id == project_id, rel.user_id == User.id))
    )
    if sort in ("rankings", "shared_tasks"):
        counts = _ranked_counts(project_id) if sort == "rankings" else _shared_counts(project_id)
        return query.outerjoin(counts, counts.c.user_id == User.id), func.coalesce(counts.c.n, 0)
    keys: dict[str, Any] = {
        "name": _name_column(),
        "reliability": rel.reliability,
        "gold": case(
            (rel.gold_answered > 0, cast(rel.gold_correct, Float) / rel.gold_answered),
            else_=None,
        ),
        "weight": rel.weight,
        "flag": case(
            (rel.flag == FLAG_REVERSED, 2),
            (rel.flag == FLAG_CHANCE, 1),
            (rel.user_id.is_not(None), 0),
            else_=None,
        ),
    }
    return query, keys.get(sort)


def _ranked_counts(project_id: int) -> Any:
    """(user_id, n): tasks ranked, 'none usable' answers not counted."""
    return (
        select(Ranking.user_id, func.count().label("n"))
        .where(
            Ranking.project_id == project_id,
            Ranking.none_usable.is_(False),
            repository.in_human_figures(Ranking.source, project_id),
        )
        .group_by(Ranking.user_id)
        .subquery("ranked")
    )


def _shared_counts(project_id: int) -> Any:
    """(user_id, n): tasks also ranked by an included other annotator."""
    mine, other = aliased(Ranking), aliased(Ranking)
    excluded_ids = select(AnnotatorExclusion.user_id).where(
        AnnotatorExclusion.project_id == project_id
    )
    return (
        select(mine.user_id, func.count(func.distinct(mine.task_id)).label("n"))
        .join(other, and_(other.task_id == mine.task_id, other.user_id != mine.user_id))
        .where(
            mine.project_id == project_id,
            mine.none_usable.is_(False),
            other.none_usable.is_(False),
            other.user_id.not_in(excluded_ids),
            repository.in_human_figures(other.source, project_id),
        )
        .group_by(mine.user_id)
        .subquery("shared")
    )


def _flagged(session: Session, project_id: int) -> int:
    excluded_ids = select(AnnotatorExclusion.user_id).where(
        AnnotatorExclusion.project_id == project_id
    )
    count = session.scalar(
        select(func.count()).where(
            AnnotatorReliability.project_id == project_id,
            AnnotatorReliability.flag.is_not(None),
            AnnotatorReliability.user_id.not_in(excluded_ids),
        )
    )
    return int(count or 0)


def _name_key(record: Any) -> tuple[str, int]:
    return ((record.display_name or record.username).lower(), record.user_id)


def _agreement_key(figures: Figures | None, order: str) -> tuple[bool, float]:
    """Annotators without a value last in either order."""
    if figures is None or figures.agreement is None:
        return True, 0.0
    return False, figures.agreement if order == "asc" else -figures.agreement


def _row(record: Any, figures: Figures | None, outliers: Mapping[int, float]) -> AnnotatorTableRow:
    reliability = None
    if record.fitted_user is not None:
        reliability = Reliability(
            reliability=record.reliability,
            lower=record.lower,
            upper=record.upper,
            weight=record.weight,
            flag=record.flag,
            evidence=record.evidence,
            comparisons=record.comparisons,
            gold_answered=record.gold_answered,
            gold_correct=record.gold_correct,
            fitted_at=record.fitted_at,
        )
    figures = figures or Figures()
    return AnnotatorTableRow(
        user_id=record.user_id,
        username=record.username,
        display_name=record.display_name,
        member=bool(record.member),
        excluded=bool(record.excluded),
        exclusion_reason=record.exclusion_reason,
        rankings=figures.rankings,
        shared_tasks=figures.shared_tasks,
        agreement=figures.agreement,
        log_m=outliers.get(record.user_id),
        reliability=reliability,
    )


# Figures from the rankings (the page's rows only, unless sorting by them)


@dataclass(frozen=True)
class Figures:
    rankings: int = 0
    shared_tasks: int = 0
    agreement: float | None = None


def _figures(
    session: Session, project_id: int, *, excluded: Collection[int], users: set[int] | None
) -> dict[int, Figures]:
    """{annotator: tasks ranked, shared tasks, agreement with the consensus of the included
    others} for `users` (None: everyone), read from the rankings of the tasks they ranked.
    Same definitions as the agreement report (app.ratings.service.agreement_report): per task,
    an included annotator is compared with the other included ones, an excluded annotator
    with all included ones; agreement is the mean over tasks."""
    if users is not None and not users:
        return {}
    query = select(Ranking.task_id, Ranking.user_id, Ranking.groups).where(
        Ranking.none_usable.is_(False),
        repository.in_human_figures(Ranking.source, project_id),
    )
    if users is None:
        query = query.where(Ranking.project_id == project_id)
    else:  # their task ids first: the (task, user) index then serves the second query
        tasks = session.scalars(
            select(Ranking.task_id)
            .distinct()
            .where(Ranking.project_id == project_id, Ranking.user_id.in_(users))
        ).all()
        if not tasks:
            return {}
        query = query.where(Ranking.task_id.in_(tasks))
    by_task: dict[int, dict[int, Groups]] = {}
    for task_id, user_id, groups in session.execute(query).all():
        if groups:
            by_task.setdefault(task_id, {})[user_id] = groups

    def wanted(user_id: int) -> bool:
        return users is None or user_id in users

    ranked: dict[int, int] = {}
    shared: dict[int, int] = {}
    values: dict[int, list[float]] = {}
    for rankings in by_task.values():
        included = {u: g for u, g in rankings.items() if u not in excluded}
        for user_id, groups in rankings.items():
            if not wanted(user_id):
                continue
            ranked[user_id] = ranked.get(user_id, 0) + 1
            others = [g for u, g in included.items() if u != user_id]
            if not others:
                continue
            shared[user_id] = shared.get(user_id, 0) + 1
            value = _agreement_with_others(groups, others)
            if value is not None:
                values.setdefault(user_id, []).append(value)
    return {
        u: Figures(n, shared.get(u, 0), fmean(values[u]) if u in values else None)
        for u, n in ranked.items()
    }


def _agreement_with_others(groups: Groups, others: list[Groups]) -> float | None:
    """One ranking against the consensus of the others of its task, as
    app.ratings.agreement.agreement_with_consensus computes it, for this annotator alone (one
    fit, not one per annotator of the task); one other ranking is that consensus itself."""
    if len(others) == 1:
        return pairwise_agreement(groups, others[0])
    return pairwise_agreement(groups, _scores_to_groups(consensus_scores(others)))


def _outliers(
    session: Session, project_id: int, user_ids: list[int], excluded: Collection[int]
) -> dict[int, float]:
    """{annotator: ln M} for the page's flagged annotators, each judged against ratings fitted
    on the included others (see app.ratings.service.agreement_report).

    Only the comparisons on the prompts they ranked are read: samples of other prompts share
    no comparison with these, and with the fit's per-item prior they do not move these
    samples' rating differences, which are all the test reads."""
    if not user_ids:
        return {}
    prompts = (
        select(Comparison.prompt_id)
        .distinct()
        .where(Comparison.project_id == project_id, Comparison.user_id.in_(user_ids))
    )
    flagged_samples = select(SampleFlag.sample_id).where(SampleFlag.kind == "harmful")
    rows = session.execute(
        select(Comparison.user_id, Comparison.winner_id, Comparison.loser_id, Comparison.tie)
        .where(
            Comparison.project_id == project_id,
            Comparison.gold == false(),
            repository.in_human_figures(Comparison.source, project_id),
            Comparison.prompt_id.in_(prompts),
            Comparison.winner_id.not_in(flagged_samples),
            Comparison.loser_id.not_in(flagged_samples),
        )
        .order_by(Comparison.id)
    ).all()
    if not rows:
        return {}
    user, winner, loser, tie = (np.asarray(column) for column in zip(*rows, strict=True))
    tie = tie.astype(bool)
    included = ~np.isin(user, list(excluded))
    flagged: dict[int, float] = {}
    for user_id in user_ids:
        own = user == user_id
        if not own.any():
            continue
        rest = included & ~own
        fitted = fit_ratings(winner[rest], loser[rest], tie[rest], bootstrap=0)
        ratings = dict(zip(fitted.ids.tolist(), fitted.ratings.tolist(), strict=True))
        votes = (
            (user_id, int(w), int(lo), 0.5 if t else 1.0)
            for w, lo, t in zip(winner[own], loser[own], tie[own], strict=True)
        )
        flagged.update(outlier_annotators(votes, ratings))
    return flagged


__all__ = [
    "DEFAULT_ORDER",
    "PAGE_SIZE",
    "SORT_COLUMNS",
    "AnnotatorTable",
    "AnnotatorTableRow",
    "Order",
    "Reliability",
    "SortColumn",
    "annotator_slice",
    "annotator_table",
    "check_sort",
    "wilson_interval",
]
