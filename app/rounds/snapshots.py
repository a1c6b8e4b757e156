"""Comparison snapshots: the immutable set of comparisons a reward model or DPO round used.

Excluded annotators and comparisons touching a flagged sample are left out by default (the
criteria are stored with the snapshot), so a later export can reproduce the training data.
Each comparison keeps the weight its annotator's reliability gave it when the snapshot was
taken (1 when the project does not weight by reliability): a later refit of the reliability
model changes new snapshots, never this one.

People's comparisons are the training data; a judge's (source 'ai') enter only with the
project's (or the round's) `judge_weight` > 0, at that weight, and only from judges that pass
their floors measured against people (app.judges.measurement `floor_check`: enough shared
pairs, not below a floor), so an unmeasured or a failing judge never trains a round; or alone
with `judge_only` (pure RLAIF, weight 1: no people to measure against). A sample a judge
merely suggests is harmful stays in: only a person's 'harmful' flag keeps it out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import and_, case, exists, false, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from app.judges.measurement import floor_check
from app.judges.repository import list_judges
from app.models import (
    AnnotatorExclusion,
    AnnotatorReliability,
    Comparison,
    ComparisonSnapshot,
    Project,
    Prompt,
    Ranking,
    Sample,
    SampleFlag,
    SnapshotComparison,
)
from app.models.sample import text_key

HARMFUL = "harmful"
"""The SampleFlag kind that keeps a sample out of training; a judge's 'suggested_harmful'
is a suggestion for people, never a final flag."""


@dataclass(frozen=True)
class JudgeData:
    """Whether and how judge (AI) comparisons enter a snapshot."""

    weight: float
    """Weight of each AI comparison (0: none enter)."""
    only: bool
    """Pure RLAIF: AI comparisons alone, each weighing 1."""

    @property
    def sources(self) -> tuple[str, ...]:
        if self.only:
            return ("ai",)
        return ("human", "ai") if self.weight > 0 else ("human",)

    def criteria(self) -> str:
        if self.only:
            return "only (weight 1)"
        return f"weight {self.weight:g}" if self.weight > 0 else "left out"


def judge_data(
    project: Project | None, *, judge_weight: float | None = None, judge_only: bool | None = None
) -> JudgeData:
    """The round's overrides where given, else the project's settings."""
    weight = judge_weight if judge_weight is not None else (project.judge_weight if project else 0)
    only = judge_only if judge_only is not None else bool(project and project.judge_only)
    return JudgeData(weight=float(weight or 0.0), only=only)


def eligible_comparisons(  # type: ignore[no-untyped-def]
    project_id: int,
    *,
    include_flagged: bool = False,
    sources: Sequence[str] = ("human",),
    ai_users: Sequence[int] | None = None,
):
    """SELECT of comparison ids that training may use: never a gold task's (those measure
    annotators), never an excluded annotator's; only those of `sources` ('human', 'ai'), and
    with `ai_users` an AI comparison only from those judges' users."""
    excluded = exists(
        select(AnnotatorExclusion.user_id).where(
            AnnotatorExclusion.project_id == project_id,
            AnnotatorExclusion.user_id == Comparison.user_id,
        )
    )
    query = select(Comparison.id).where(
        Comparison.project_id == project_id,
        Comparison.gold == false(),
        ~excluded,
        Comparison.source.in_(list(sources)),
    )
    if ai_users is not None:
        query = query.where(
            or_(Comparison.source != "ai", Comparison.user_id.in_(list(ai_users)))
        )
    if not include_flagged:
        flagged = exists(
            select(SampleFlag.id).where(
                SampleFlag.kind == HARMFUL,
                or_(
                    SampleFlag.sample_id == Comparison.winner_id,
                    SampleFlag.sample_id == Comparison.loser_id,
                ),
            )
        )
        query = query.where(~flagged)
    return query


def create_snapshot(
    session: Session,
    *,
    project_id: int,
    name: str,
    include_flagged: bool = False,
    judge_weight: float | None = None,
    judge_only: bool | None = None,
) -> ComparisonSnapshot:
    """Freeze the project's eligible comparisons, each with its weight.

    With `project.reliability_weighting` on, a person's comparison weighs their fitted
    `AnnotatorReliability.weight` (1 for an annotator not fitted yet); off, every weight is 1.
    A judge's weighs `judge_weight` (`judge_data`: the round's override, else the project's),
    from the judges `admitted_judges` lets in (all of them with `judge_only`).
    """
    project = session.get(Project, project_id)
    weighting = bool(project is not None and project.reliability_weighting)
    judges = judge_data(project, judge_weight=judge_weight, judge_only=judge_only)
    admitted: list[int] | None = None
    judge_criteria: dict[str, Any] = {}
    if "ai" in judges.sources and not judges.only:
        admitted, judge_criteria = admitted_judges(session, project_id)
    snapshot = ComparisonSnapshot(
        project_id=project_id,
        name=name,
        criteria={
            "excluded_annotators": "left out",
            "flagged_samples": ("included" if include_flagged else "left out"),
            "reliability_weights": ("applied" if weighting else "off"),
            "judge_comparisons": judges.criteria(),
            **({"judges": judge_criteria} if judge_criteria else {}),
        },
    )
    session.add(snapshot)
    session.flush()
    ids = eligible_comparisons(
        project_id, include_flagged=include_flagged, sources=judges.sources, ai_users=admitted
    ).subquery()
    person = func.coalesce(AnnotatorReliability.weight, 1.0) if weighting else literal(1.0)
    ai_weight = 1.0 if judges.only else judges.weight
    weight = case((Comparison.source == "ai", literal(ai_weight)), else_=person)
    rows = (
        select(literal(snapshot.id), ids.c.id, weight)
        .join(Comparison, Comparison.id == ids.c.id)
        .outerjoin(
            AnnotatorReliability,
            and_(
                AnnotatorReliability.project_id == project_id,
                AnnotatorReliability.user_id == Comparison.user_id,
            ),
        )
    )
    session.execute(
        insert(SnapshotComparison).from_select(["snapshot_id", "comparison_id", "weight"], rows)
    )
    snapshot.comparison_count = int(
        session.scalar(select(func.count()).where(SnapshotComparison.snapshot_id == snapshot.id))
        or 0
    )
    session.flush()
    return snapshot


def admitted_judges(session: Session, project_id: int) -> tuple[list[int], dict[str, Any]]:
    """(users of the judges whose rankings may train, {judge name: 'admitted: ...' or 'left
    out: ...' with the figures}). A judge is admitted when it passes its floors measured
    (`FloorCheck.passes`), whatever its state: one an admin paused for another reason still
    counts; one below its floor counts for nothing, its earlier rankings included."""
    users: list[int] = []
    why: dict[str, Any] = {}
    for judge in list_judges(session, project_id=project_id):
        check = floor_check(session, judge)
        if check.passes:
            users.append(judge.user_id)
            why[judge.name] = f"admitted: {check.summary}"
        else:
            reason = "; ".join(check.below) or check.unmeasured or check.summary
            why[judge.name] = f"left out: {reason}"
    return users, why


@dataclass(frozen=True)
class RankedResponses:
    """One ranking restricted to the snapshot: responses and their tie-group index (0 best)."""

    ranking_id: int
    prompt: Any
    sample_ids: list[int]
    responses: list[str]
    groups: list[int]
    weight: float = 1.0
    """Its annotator's reliability weight frozen in the snapshot (one annotator per ranking)."""
    source: str = "human"
    """'human' or 'ai' (a judge's): held-out accuracy is scored on people's alone."""


def ranked_responses(session: Session, snapshot_id: int) -> list[RankedResponses]:
    """Rebuild each ranking from the snapshot's comparisons (the K-way reward model input).

    A text that appears twice in a ranking is kept once, where it ranks best: the reward
    model must not learn to order one answer against itself."""
    rows = session.execute(
        select(
            Comparison.ranking_id,
            Comparison.winner_id,
            Comparison.loser_id,
            SnapshotComparison.weight,
            Comparison.source,
        )
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .where(SnapshotComparison.snapshot_id == snapshot_id)
    ).all()
    members: dict[int, set[int]] = defaultdict(set)
    weights: dict[int, float] = {}
    sources: dict[int, str] = {}
    for ranking_id, winner, loser, weight, source in rows:
        members[ranking_id].update((winner, loser))
        weights[ranking_id] = float(weight)  # one annotator per ranking: one weight
        sources[ranking_id] = str(source)
    if not members:
        return []
    rankings = session.scalars(select(Ranking).where(Ranking.id.in_(list(members)))).all()
    sample_ids = {sid for ids in members.values() for sid in ids}
    texts = dict(
        session.execute(select(Sample.id, Sample.text).where(Sample.id.in_(sample_ids))).all()
    )
    prompts = _prompts_of_rankings(session, [r.id for r in rankings])
    out: list[RankedResponses] = []
    for ranking in sorted(rankings, key=lambda r: r.id):
        keep = members[ranking.id]
        ids: list[int] = []
        groups: list[int] = []
        level = 0
        seen: set[str] = set()
        for group in ranking.groups:
            kept = []
            for sid in group:
                if sid in keep and (key := text_key(texts[sid])) not in seen:
                    seen.add(key)
                    kept.append(sid)
            if kept:
                ids.extend(kept)
                groups.extend([level] * len(kept))
                level += 1
        if level >= 2:
            out.append(
                RankedResponses(
                    ranking_id=ranking.id,
                    prompt=prompts[ranking.id],
                    sample_ids=ids,
                    responses=[texts[sid] for sid in ids],
                    groups=groups,
                    weight=weights[ranking.id],
                    source=sources[ranking.id],
                )
            )
    return out


def _prompts_of_rankings(session: Session, ranking_ids: list[int]) -> dict[int, Any]:
    from app.models import RankingTask

    rows = session.execute(
        select(Ranking.id, Prompt.text, Prompt.messages)
        .join(RankingTask, RankingTask.id == Ranking.task_id)
        .join(Prompt, Prompt.id == RankingTask.prompt_id)
        .where(Ranking.id.in_(ranking_ids))
    ).all()
    return {rid: (messages or text) for rid, text, messages in rows}


class WeightedPair(NamedTuple):
    """A DPO pair of the snapshot with its annotator's frozen reliability weight."""

    prompt: Any
    chosen: str
    rejected: str
    weight: float


def preference_pairs(session: Session, snapshot_id: int) -> list[tuple[Any, str, str]]:
    """(prompt, chosen text, rejected text) of the snapshot's non-tie comparisons (for DPO),
    leaving out pairs of one text (case and whitespace aside): they state no preference."""
    pairs = weighted_preference_pairs(session, snapshot_id)
    return [(p.prompt, p.chosen, p.rejected) for p in pairs]


def weighted_preference_pairs(session: Session, snapshot_id: int) -> list[WeightedPair]:
    """`preference_pairs` with each pair's weight (`SnapshotComparison.weight`)."""
    from sqlalchemy.orm import aliased

    from app.models import RankingTask

    chosen, rejected = aliased(Sample), aliased(Sample)
    rows = session.execute(
        select(Prompt.text, Prompt.messages, chosen.text, rejected.text, SnapshotComparison.weight)
        .select_from(Comparison)
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .join(chosen, chosen.id == Comparison.winner_id)
        .join(rejected, rejected.id == Comparison.loser_id)
        .join(RankingTask, RankingTask.id == Comparison.task_id)
        .join(Prompt, Prompt.id == RankingTask.prompt_id)
        .where(SnapshotComparison.snapshot_id == snapshot_id, ~Comparison.tie)
        .order_by(Comparison.id)
    ).all()
    return [
        WeightedPair(messages or text, c, r, float(w))
        for text, messages, c, r, w in rows
        if text_key(c) != text_key(r)
    ]
