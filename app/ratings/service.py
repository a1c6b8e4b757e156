"""Ratings use cases: fit and store Bradley-Terry ratings of samples and policy versions, the
leaderboard, annotator agreement, excluding annotators, and the debounced recomputation.

Debounce (the embedded default has no Redis, so no broker-side dedup): the first submit after
a run sets projects.ratings_dirty_since with a conditional UPDATE and, after its commit, sends
`ratings.recompute` with countdown = ratings_debounce_seconds; later submits find the marker
set and send nothing. The job claims the marker in one short transaction, reads the
comparisons in the next, fits outside any transaction, stores in a third and releases the claim
in a fourth. The claim waits for the submits in flight (an advisory lock they hold shared, see
repository.mark_dirty), so the load sees every comparison whose submit found the marker set.

The claim does not clear the marker: it writes the job's claim into it (the claim time moved
back CLAIM_SHIFT), so the leaderboard's `recompute_pending` stays true until the new fit is
stored, and a submit during the run reads the claim as a stale marker: it sets the marker again
and sends the next job. The release clears the marker only if it still holds this job's claim.
Continuous annotation gives one recomputation per debounce window (plus the fit's duration),
and the stored ratings lag by at most that much.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import after_commit, utcnow
from app.errors import InvalidInput, NotFound
from app.jobs import RATINGS_RECOMPUTE, enqueue
from app.models import AnnotatorExclusion, AnnotatorReliability, PolicyRating, PolicyVersion
from app.projects.service import require_project
from app.ratings import position, repository
from app.ratings.agreement import (
    TaskAgreement,
    agreement_with_consensus,
    outlier_annotators,
    pairwise_agreement,
    task_agreement,
)
from app.ratings.bradley_terry import BETTER, WORSE, BTResult, consensus_scores, fit_ratings
from app.ratings.leaderboard import (
    VersionInfo,
    VersionRating,
    consensus_order,
    fit_by_ranking,
    previous_versions,
    rate_versions,
)
from app.ratings.position import (
    PositionInput,
    PositionReport,
    fit_samples,
    load_position,
    position_report,
)
from app.ratings.reliability import GoldAnswers, ReliabilityFit, fit_reliability, gold_answers
from app.ratings.repository import ComparisonArrays, Raters
from app.ratings.schemas import LeaderboardOut, LeaderboardVersion

logger = logging.getLogger(__name__)

MIN_STALE_MARKER = timedelta(minutes=2)
"""A marker older than max(this, 20 debounce windows) is presumed to have lost its job."""
CLAIM_SHIFT = timedelta(days=36525)
"""A running job's claim is its claim time moved back a century: older than any stale marker,
so a submit re-sets it, yet unique to the job and still telling when it was claimed."""


# Fit and store


@dataclass(frozen=True)
class FitInput:
    project_id: int
    read_at: datetime
    comparisons: ComparisonArrays
    """Excluded annotators' comparisons included: they are measured, never rate anything."""
    versions: list[VersionInfo]
    excluded: frozenset[int] = frozenset()
    gold: GoldAnswers | None = None
    weighting: bool = False
    """Project.reliability_weighting: weight the fits by annotator reliability."""
    min_tasks: int = 10
    """Project.reliability_min_tasks."""
    position: PositionInput | None = None
    """Card order: the first-card term enters the sample fit when `position.correct`."""


@dataclass(frozen=True)
class FitOutput:
    project_id: int
    read_at: datetime
    samples: BTResult
    versions: list[VersionRating]
    reliability: ReliabilityFit | None = None


@dataclass(frozen=True)
class RecomputeSummary:
    project_id: int
    comparisons: int
    samples: int
    versions: int
    stored: bool
    """False when a fit on newer data was stored meanwhile (this one is dropped)."""


def load(
    session: Session,
    *,
    project_id: int,
    now: datetime | None = None,
    raters: Raters | None = None,
) -> FitInput:
    """`raters` None: the comparisons the project's human figures count (people only unless
    judges are counted in); 'ai' or 'all' for the leaderboard's other views."""
    project = require_project(session, project_id)
    comparisons = repository.load_comparisons(
        session, project_id, include_excluded=True, raters=raters
    )
    infos = [
        VersionInfo(v.id, v.number, v.parent_id) for v in repository.versions(session, project_id)
    ]
    return FitInput(
        project_id,
        now or utcnow(),
        comparisons,
        infos,
        excluded=frozenset(repository.excluded_users(session, project_id)),
        gold=gold_answers(repository.gold_comparisons(session, project_id, raters=raters)),
        weighting=project.reliability_weighting,
        min_tasks=project.reliability_min_tasks,
        position=load_position(session, project),
    )


def compute(data: FitInput) -> FitOutput:
    """The CPU part, no database: annotator reliability, then per-sample and per-version fits
    with ranking bootstraps (weighted by reliability when the project says so).

    Once active selection chose any task, the version fit uses only uniformly drawn tasks'
    comparisons (an unbiased evaluation); the sample fit and reliability use them all.
    """
    c = data.comparisons
    excluded = np.isin(c.user, np.fromiter(data.excluded, np.int64, len(data.excluded)))
    reliability = fit_reliability(
        c.user,
        c.ranking,
        c.ranking if c.task is None else c.task,  # without task ids nothing counts as shared
        c.winner,
        c.loser,
        c.tie,
        rates=~excluded,
        gold=data.gold,
        min_tasks=data.min_tasks,
    )
    used = c.where(~excluded)
    per_user = reliability.weights() if data.weighting else {}
    weights = _comparison_weights(used.user, per_user)
    samples = fit_samples(
        used.winner, used.loser, used.tie, used.ranking, data.position, weights=weights
    )
    if used.uniform is not None and not used.uniform.all():
        uniform = used.uniform
        used = used.where(uniform)
        weights = None if weights is None else weights[uniform]
    fit: Callable[..., BTResult] = fit_by_ranking
    if data.position is not None and data.position.correct:  # the same card term, per version
        winner_first, loser_first = position.first_flags(
            used.ranking, used.winner, used.loser, data.position.first
        )
        fit = functools.partial(
            position.corrected_by_ranking, winner_first=winner_first, loser_first=loser_first
        )
    versions = rate_versions(
        data.versions,
        used.winner_version,
        used.loser_version,
        used.tie,
        used.ranking,
        weights=weights,
        fit=fit,
    )
    return FitOutput(data.project_id, data.read_at, samples, versions, reliability)


def _comparison_weights(users: np.ndarray, per_user: dict[int, float]) -> np.ndarray | None:
    """Each comparison's annotator's weight (absent: 1), scaled to mean 1 as both sample fits
    (fit_by_ranking and the position-corrected one) scale them; None when all are equal."""
    if not per_user or all(w == 1.0 for w in per_user.values()) or not len(users):
        return None
    known = np.array(sorted(per_user), dtype=np.int64)
    values = np.array([per_user[u] for u in known.tolist()])
    i = np.minimum(np.searchsorted(known, users), len(known) - 1)
    weights = np.where(known[i] == users, values[i], 1.0)
    return weights / weights.mean()


def store(session: Session, fitted: FitOutput) -> bool:
    """Persist the fit unless one on newer data is already stored (two runs overlapped)."""
    repository.lock_store(session, fitted.project_id)
    newest = repository.newest_fit(session, fitted.project_id)
    if newest is not None and newest > fitted.read_at:
        return False
    at = fitted.read_at
    repository.replace_policy_ratings(
        session,
        fitted.project_id,
        [
            {
                "policy_version_id": v.version_id,
                "elo": v.elo,
                "bt_rating": v.rating,
                "bt_lower": v.ci_low,
                "bt_upper": v.ci_high,
                "comparisons": v.comparisons,
                "win_rate_vs_previous": v.win_rate_vs_previous,
                "verdict": v.verdict,
                "fitted_at": at,
            }
            for v in fitted.versions
        ],
    )
    _store_human_verdicts(session, fitted)
    repository.store_sample_ratings(
        session,
        fitted.project_id,
        [
            {
                "sample_id": sample_id,
                "bt_rating": rating,
                "bt_lower": low,
                "bt_upper": high,
                "bt_comparisons": count,
                "bt_fitted_at": at,
            }
            for sample_id, (rating, low, high, count) in fitted.samples.as_dict().items()
        ],
        at,
    )
    if fitted.reliability is not None:
        repository.replace_reliability(
            session,
            fitted.project_id,
            [
                {
                    "user_id": a.user_id,
                    "reliability": a.reliability,
                    "lower": a.lower,
                    "upper": a.upper,
                    "comparisons": a.comparisons,
                    "shared_tasks": a.shared_tasks,
                    "gold_answered": a.gold_answered,
                    "gold_correct": a.gold_correct,
                    "weight": a.weight,
                    "flag": a.flag,
                    "evidence": a.evidence,
                    "fitted_at": at,
                }
                for a in fitted.reliability.annotators
            ],
        )
    session.flush()
    return True


def reliability_weights(session: Session, project_id: int) -> dict[int, float]:
    """{annotator: weight} to use now for the stored fit's annotators (anyone absent weighs 1):
    all 1 when the project does not weight by reliability, and 1 below its minimum of shared
    tasks. What a training snapshot stores per comparison."""
    project = require_project(session, project_id)
    rows = repository.reliability_rows(session, project_id)
    if not project.reliability_weighting:
        return dict.fromkeys(rows, 1.0)
    return {
        user_id: row.weight if row.shared_tasks >= project.reliability_min_tasks else 1.0
        for user_id, row in rows.items()
    }


def reliability_rows(session: Session, project_id: int) -> dict[int, AnnotatorReliability]:
    """{annotator: their stored reliability fit}."""
    return repository.reliability_rows(session, project_id)


def _store_human_verdicts(session: Session, fitted: FitOutput) -> None:
    """PolicyVersion.human_verdict: "better" or "worse" where the fit judged a version against
    its parent with a clear sign (the project page flags a worse current version), else None."""
    judged = {v.version_id: v for v in fitted.versions}
    for version in repository.versions(session, fitted.project_id):
        rating = judged.get(version.id)
        verdict = None
        if (
            rating is not None
            and version.parent_id is not None
            and rating.previous_id == version.parent_id
            and rating.verdict in (BETTER, WORSE)
        ):
            verdict = rating.verdict
        if version.human_verdict != verdict:
            version.human_verdict = verdict


def recompute(
    session: Session, *, project_id: int, now: datetime | None = None
) -> RecomputeSummary:
    """On demand (admin button, exclusions, CLI): read, fit and store in the caller's unit of
    work. The fit takes well under a second at typical sizes (bench/ratings.py)."""
    require_project(session, project_id)
    fitted = compute(load(session, project_id=project_id, now=now))
    stored = store(session, fitted)
    return RecomputeSummary(
        project_id,
        fitted.samples.n_comparisons,
        len(fitted.samples.ids),
        len(fitted.versions),
        stored,
    )


# Debounced background recomputation


def _stale_after() -> timedelta:
    return max(MIN_STALE_MARKER, timedelta(seconds=20 * get_settings().ratings_debounce_seconds))


def note_new_rankings(session: Session, *, project_id: int, now: datetime | None = None) -> None:
    """Called by a submit that wrote comparisons: mark the project dirty and, if this call set
    the marker, send the debounced job once the submit commits."""
    now = now or utcnow()
    debounce = get_settings().ratings_debounce_seconds
    if repository.mark_dirty(
        session, project_id=project_id, now=now, stale_before=now - _stale_after()
    ):
        after_commit(session, lambda: send_recompute(project_id, countdown=debounce))


def send_recompute(project_id: int, *, countdown: float) -> None:
    """Runs after the submit committed: a broker failure must not turn the saved ranking into
    an error for the annotator. The marker stays set; the first submit after it goes stale
    sends the job again."""
    try:
        enqueue(RATINGS_RECOMPUTE, project_id, countdown=countdown)
    except Exception:
        logger.exception("could not send ratings.recompute for project %s", project_id)


def claim(session: Session, *, project_id: int, now: datetime | None = None) -> datetime | None:
    """The job's first, short transaction: the claim to release once the fit is stored, or None
    when there is nothing to do (the marker is clear, or another job's claim made within the
    stale window holds it: a duplicate message). A claim older than that is a lost run's and is
    taken over. The load runs in the next transaction, so submits wait for the claim only,
    never for the load."""
    now = now or utcnow()
    token = now - CLAIM_SHIFT
    live = (token - _stale_after(), token)
    if repository.claim_dirty(session, project_id, claim=token, live_claims=live):
        return token
    return None


def release(session: Session, *, project_id: int, claim: datetime) -> bool:
    """After the fit is stored, in its own short transaction: clear the marker if it still
    holds this job's claim; False when a submit set it again during the run (its job follows).
    In the store's transaction, a submit re-setting the marker would wait for the whole store,
    or deadlock with it over sample_ratings rows (submits write Elo after the marker)."""
    return repository.release_claim(session, project_id, claim=claim)


# Leaderboard


def leaderboard(
    session: Session, *, project_id: int, raters: Raters | None = None
) -> LeaderboardOut:
    """The stored fit, best first; versions that never met another version come last.

    The stored fit counts the project's human-figure raters (people, or people and judges when
    an admin counts judges in); another `raters` view ('human', 'ai', 'all') is fitted on the
    fly from those comparisons alone, with the same fit, and stores nothing."""
    project = require_project(session, project_id)
    stored_raters = repository.figure_raters(session, project_id)
    if raters is not None and raters != stored_raters:
        return _leaderboard_on_the_fly(session, project_id=project_id, raters=raters)
    versions = repository.versions(session, project_id)
    stored = repository.policy_ratings(session, project_id)
    previous = previous_versions(
        [VersionInfo(v.id, v.number, v.parent_id) for v in versions], set(stored)
    )
    rows = [_version_row(v, stored.get(v.id), previous.get(v.id)) for v in versions]
    rows.sort(key=lambda r: (r.rating is None, -(r.rating or 0.0), r.number))
    return LeaderboardOut(
        project_id=project_id,
        # The sample fit too: before two versions meet, it is the only fit there is.
        computed_at=repository.newest_fit(session, project_id),
        recompute_pending=repository.dirty_since(session, project_id) is not None,
        versions=rows,
        reliability_weighted=project.reliability_weighting
        and any(r.weight != 1.0 for r in repository.reliability_rows(session, project_id).values()),
        uniform_tasks_only=repository.has_selected_tasks(session, project_id),
        raters=stored_raters,
    )


def _leaderboard_on_the_fly(
    session: Session, *, project_id: int, raters: Raters, now: datetime | None = None
) -> LeaderboardOut:
    """The leaderboard of one kind of rater, fitted now (a fit takes well under a second at
    typical sizes, bench/ratings.py)."""
    data = load(session, project_id=project_id, now=now, raters=raters)
    fitted = compute(data)
    versions = repository.versions(session, project_id)
    by_id = {v.version_id: v for v in fitted.versions}
    previous = previous_versions(data.versions, set(by_id))
    rows = [
        _version_row(v, _as_policy_rating(by_id.get(v.id)), previous.get(v.id)) for v in versions
    ]
    rows.sort(key=lambda r: (r.rating is None, -(r.rating or 0.0), r.number))
    return LeaderboardOut(
        project_id=project_id,
        computed_at=data.read_at,
        recompute_pending=False,
        versions=rows,
        reliability_weighted=data.weighting
        and fitted.reliability is not None
        and any(a.weight != 1.0 for a in fitted.reliability.annotators),
        uniform_tasks_only=repository.has_selected_tasks(session, project_id),
        raters=raters,
    )


def _as_policy_rating(rating: VersionRating | None) -> PolicyRating | None:
    """A fitted version rating as an unsaved PolicyRating row, to render like a stored one."""
    if rating is None:
        return None
    return PolicyRating(
        policy_version_id=rating.version_id,
        elo=rating.elo,
        bt_rating=rating.rating,
        bt_lower=rating.ci_low,
        bt_upper=rating.ci_high,
        comparisons=rating.comparisons,
        win_rate_vs_previous=rating.win_rate_vs_previous,
        verdict=rating.verdict,
    )


def _version_row(
    version: PolicyVersion, rating: PolicyRating | None, previous_id: int | None
) -> LeaderboardVersion:
    return LeaderboardVersion(
        id=version.id,
        number=version.number,
        name=version.name,
        kind=str(version.kind),
        status=str(version.status),
        rating=rating.bt_rating if rating else None,
        ci_low=rating.bt_lower if rating else None,
        ci_high=rating.bt_upper if rating else None,
        elo=rating.elo if rating else None,
        comparisons=rating.comparisons if rating else 0,
        previous_version_id=previous_id,
        win_rate_vs_previous=rating.win_rate_vs_previous if rating else None,
        verdict=rating.verdict if rating else None,  # type: ignore[arg-type]
        human_verdict=version.human_verdict,  # type: ignore[arg-type]
    )


# Agreement


@dataclass(frozen=True)
class AnnotatorRow:
    user_id: int
    username: str
    display_name: str
    excluded: bool | None
    """None: no longer a member (their rankings still count)."""
    rankings: int
    shared_tasks: int
    """Tasks this annotator ranked together with at least one included annotator."""
    agreement: float | None
    """Mean pairwise agreement with the consensus of the included others on shared tasks."""
    log_m: float | None
    """ln M of the outlier test when flagged (M > 1/α), else None."""
    # The stored Crowd-BT fit (app.ratings.reliability); None before the first fit
    reliability: float | None = None
    """P(orders a pair as the consensus does): 0.5 chance, below it reversed."""
    lower: float | None = None
    upper: float | None = None
    """The 95% interval of `reliability`."""
    weight: float | None = None
    """What their comparisons count for when the project weights by reliability."""
    flag: str | None = None
    """'reversed' or 'chance' (with enough shared tasks), else None."""
    evidence: str | None = None
    """The sentence behind the flag."""
    gold_answered: int = 0
    """Gold pairs answered whose order the truth decides; gold_correct of them right."""
    gold_correct: int = 0

    @property
    def outlier(self) -> bool:
        return self.log_m is not None


@dataclass(frozen=True)
class AgreementReport:
    tasks_with_overlap: int
    pairwise_agreement: float | None
    kendall_tau: float | None
    least_agreed: list[tuple[int, TaskAgreement]]
    annotators: list[AnnotatorRow]


def agreement_report(
    session: Session, *, project_id: int, worst: int = 10, per_annotator: bool = True
) -> AgreementReport:
    """Agreement among included annotators, and how each annotator (excluded ones too, so an
    admin can decide to bring them back) compares with the included others. The leaderboard
    page leaves the per-annotator rows out (`per_annotator=False`): its paged table
    (app.ratings.annotators) computes them for the annotators it shows.

    The outlier test scores each annotator's votes against sample ratings fitted WITHOUT that
    annotator: with one to three rankings per task, ratings that include the judge's own votes
    would mostly echo them back and hide a contrarian.
    """
    require_project(session, project_id)
    people = repository.annotators(session, project_id)
    excluded = {uid for uid, *_, ex in people if ex}
    by_task = repository.rankings_by_task(session, project_id)
    included_by_task = {
        task: {u: g for u, g in rankings.items() if u not in excluded}
        for task, rankings in by_task.items()
    }
    overlapping = {t: r for t, r in included_by_task.items() if len(r) >= 2}
    per_task = [(task, task_agreement(rankings)) for task, rankings in overlapping.items()]
    agreements = [
        a["pairwise_agreement"] for _, a in per_task if a["pairwise_agreement"] is not None
    ]
    taus = [a["kendall_tau"] for _, a in per_task if a["kendall_tau"] is not None]
    per_task.sort(key=lambda item: (item[1]["pairwise_agreement"] or 0.0, item[0]))
    if not per_annotator:
        return AgreementReport(
            tasks_with_overlap=len(per_task),
            pairwise_agreement=fmean(agreements) if agreements else None,
            kendall_tau=fmean(taus) if taus else None,
            least_agreed=per_task[:worst],
            annotators=[],
        )

    with_consensus = _agreement_with_consensus(overlapping)
    shared: dict[int, int] = {}
    excluded_values: dict[int, list[float]] = {}
    for task, rankings in by_task.items():
        for user_id, groups in rankings.items():
            others = {u: g for u, g in included_by_task[task].items() if u != user_id}
            if not others:
                continue
            shared[user_id] = shared.get(user_id, 0) + 1
            if user_id in excluded:  # scored against the included others only
                value = _agreement_with_consensus({task: {**others, user_id: groups}}).get(user_id)
                if value is not None:
                    excluded_values.setdefault(user_id, []).append(value)
    with_consensus.update({u: fmean(values) for u, values in excluded_values.items()})

    outliers = _outliers(session, project_id, [uid for uid, *_ in people])
    ranked = {u: sum(u in r for r in by_task.values()) for u, *_ in people}
    reliability = repository.reliability_rows(session, project_id)
    rows = [
        AnnotatorRow(
            user_id=uid,
            username=name,
            display_name=display,
            excluded=ex,
            rankings=ranked[uid],
            shared_tasks=shared.get(uid, 0),
            agreement=with_consensus.get(uid),
            log_m=outliers.get(uid),
            **_reliability_fields(reliability.get(uid)),
        )
        for uid, name, display, ex in people
    ]
    return AgreementReport(
        tasks_with_overlap=len(per_task),
        pairwise_agreement=fmean(agreements) if agreements else None,
        kendall_tau=fmean(taus) if taus else None,
        least_agreed=per_task[:worst],
        annotators=rows,
    )


def _reliability_fields(row: AnnotatorReliability | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        "reliability": row.reliability,
        "lower": row.lower,
        "upper": row.upper,
        "weight": row.weight,
        "flag": row.flag,
        "evidence": row.evidence,
        "gold_answered": row.gold_answered,
        "gold_correct": row.gold_correct,
    }


def _agreement_with_consensus(
    rankings_by_task: dict[int, dict[int, list[list[int]]]],
) -> dict[int, float]:
    """agreement_with_consensus, with a shortcut for the common two-annotator task: there the
    consensus of "the others" is the other ranking itself (a fit on one ranking keeps its
    order and ties), so no fit is needed. 5,000 such tasks: ~0.3 s instead of ~10 s."""
    pairs: dict[int, list[float]] = {}
    rest: dict[int, dict[int, list[list[int]]]] = {}
    for task, rankings in rankings_by_task.items():
        if len(rankings) != 2:
            rest[task] = rankings
            continue
        (first, a), (second, b) = rankings.items()
        value = pairwise_agreement(a, b)
        if value is not None:
            pairs.setdefault(first, []).append(value)
            pairs.setdefault(second, []).append(value)
    for task, rankings in rest.items():  # one task at a time: every task weighs the same
        for user_id, value in agreement_with_consensus({task: rankings}).items():
            pairs.setdefault(user_id, []).append(value)
    return {u: fmean(v) for u, v in pairs.items()}


def _outliers(session: Session, project_id: int, user_ids: list[int]) -> dict[int, float]:
    """{annotator: ln M} for flagged annotators, each judged against a leave-one-out fit."""
    everyone = repository.load_comparisons(session, project_id, include_excluded=True)
    included = repository.load_comparisons(session, project_id, include_excluded=False)
    flagged: dict[int, float] = {}
    for user_id in user_ids:
        own = everyone.where(everyone.user == user_id)
        if len(own) == 0:
            continue
        rest = included.where(included.user != user_id)
        fitted = fit_ratings(rest.winner, rest.loser, rest.tie, bootstrap=0)
        ratings = dict(zip(fitted.ids.tolist(), fitted.ratings.tolist(), strict=True))
        votes = (
            (user_id, int(w), int(lo), 0.5 if t else 1.0)
            for w, lo, t in zip(own.winner, own.loser, own.tie, strict=True)
        )
        flagged.update(outlier_annotators(votes, ratings))
    return flagged


# Per-prompt consensus


@dataclass(frozen=True)
class ConsensusSample:
    sample_id: int
    version_number: int
    score: float
    text: str


@dataclass(frozen=True)
class PromptConsensus:
    prompt_id: int
    text: str
    rankings: int
    annotators: int
    samples: list[ConsensusSample]


def prompt_consensus(
    session: Session, *, project_id: int, limit: int = 20
) -> list[PromptConsensus]:
    """Consensus order of the samples of the most recently ranked prompts, from all included
    annotators' rankings (what the admin reads; the reward model trains on the pairs)."""
    require_project(session, project_id)
    prompts = repository.recent_prompt_rankings(session, project_id, limit=limit)
    scores = {p: consensus_scores(rankings) for p, _, rankings, _ in prompts}
    details = repository.sample_details(session, [s for v in scores.values() for s in v])
    return [
        PromptConsensus(
            prompt_id=prompt_id,
            text=text,
            rankings=len(rankings),
            annotators=len(users),
            samples=[
                ConsensusSample(sid, details[sid][2], scores[prompt_id][sid], details[sid][0])
                for sid in consensus_order(scores[prompt_id])
            ],
        )
        for prompt_id, text, rankings, users in prompts
    ]


# Excluding annotators


def set_excluded(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    excluded: bool,
    reason: str | None = None,
    by_user_id: int | None = None,
    now: datetime | None = None,
) -> AnnotatorExclusion | None:
    """Exclude (or bring back) an annotator: their comparisons leave (or rejoin) the ratings,
    which are refitted at once, and future training snapshots. Members and former members
    who ranked here can be excluded; the exclusion outlives the membership."""
    require_project(session, project_id)
    if not repository.is_annotator(session, project_id=project_id, user_id=user_id):
        raise NotFound(f"User {user_id} is not an annotator of project {project_id}")
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise InvalidInput("The reason is longer than 500 characters", details={"field": "reason"})
    exclusion = repository.exclusion(session, project_id=project_id, user_id=user_id)
    if excluded:
        if exclusion is None:
            exclusion = AnnotatorExclusion(project_id=project_id, user_id=user_id)
            session.add(exclusion)
        exclusion.reason = reason or None
        exclusion.excluded_by_id = by_user_id
        exclusion.created_at = now or utcnow()
    elif exclusion is not None:
        session.delete(exclusion)
        exclusion = None
    session.flush()
    recompute(session, project_id=project_id, now=now)
    return exclusion


# The admin page


@dataclass(frozen=True)
class LeaderboardPage:
    project_name: str
    leaderboard: LeaderboardOut
    agreement: AgreementReport
    prompts: list[PromptConsensus]
    position_bias: PositionReport | None = None


def leaderboard_page(
    session: Session, *, project_id: int, raters: Raters | None = None
) -> LeaderboardPage:
    project = require_project(session, project_id)
    return LeaderboardPage(
        project_name=project.name,
        leaderboard=leaderboard(session, project_id=project_id, raters=raters),
        agreement=agreement_report(session, project_id=project_id, per_annotator=False),
        prompts=prompt_consensus(session, project_id=project_id),
        position_bias=position_report(session, project_id),
    )
