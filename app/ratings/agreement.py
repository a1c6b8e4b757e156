"""How much annotators agree, with each other and with the consensus
(docs/training-notes.md §Agreement).

A ranking is a list of tie groups of sample ids, best first. Two rankings are compared only
on the samples both contain, so a ranking that skipped a sample still counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from statistics import fmean
from typing import TypedDict

from scipy.stats import kendalltau

from app.ratings.bradley_terry import LN10, consensus_scores
from app.ratings.elo import SCALE

Groups = Sequence[Sequence[int]]


def _positions(groups: Groups) -> dict[int, int]:
    """{sample id: index of its group}; equal positions are ties, lower is better."""
    return {sample_id: rank for rank, group in enumerate(groups) for sample_id in group}


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def pairwise_agreement(a: Groups, b: Groups) -> float | None:
    """Share of the sample pairs in both rankings on which both give the same outcome
    (same winner, or both a tie); None when they share fewer than two samples."""
    pos_a, pos_b = _positions(a), _positions(b)
    common = sorted(pos_a.keys() & pos_b.keys())
    pairs = list(combinations(common, 2))
    if not pairs:
        return None
    same = sum(_sign(pos_a[i] - pos_a[j]) == _sign(pos_b[i] - pos_b[j]) for i, j in pairs)
    return same / len(pairs)


def kendall_tau(a: Groups, b: Groups) -> float | None:
    """Kendall's tau-b on the shared samples (tau-b corrects for ties); None when undefined:
    fewer than two shared samples, or one ranking ties all of them."""
    pos_a, pos_b = _positions(a), _positions(b)
    common = sorted(pos_a.keys() & pos_b.keys())
    if len(common) < 2:
        return None
    tau = kendalltau([pos_a[i] for i in common], [pos_b[i] for i in common]).statistic
    return None if math.isnan(tau) else float(tau)


class TaskAgreement(TypedDict):
    n_annotators: int
    n_annotator_pairs: int
    pairwise_agreement: float | None
    kendall_tau: float | None


def task_agreement(rankings: Mapping[int, Groups]) -> TaskAgreement:
    """Mean pairwise agreement and mean tau over all pairs of annotators of one task.

    `rankings` maps annotator id to ranking; annotator pairs with nothing in common are left
    out of the means (None when no pair counts).
    """
    agreements: list[float] = []
    taus: list[float] = []
    for first, second in combinations(sorted(rankings), 2):
        agreement = pairwise_agreement(rankings[first], rankings[second])
        tau = kendall_tau(rankings[first], rankings[second])
        if agreement is not None:
            agreements.append(agreement)
        if tau is not None:
            taus.append(tau)
    n = len(rankings)
    return TaskAgreement(
        n_annotators=n,
        n_annotator_pairs=n * (n - 1) // 2,
        pairwise_agreement=fmean(agreements) if agreements else None,
        kendall_tau=fmean(taus) if taus else None,
    )


def _scores_to_groups(scores: Mapping[int, float], resolution: float = 1e-6) -> list[list[int]]:
    """Best-first tie groups from scores; scores within `resolution` points tie, since a fit
    on evenly split votes gives equal ratings only up to rounding."""
    groups: list[list[int]] = []
    last = math.inf
    for sample_id, score in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
        if last - score > resolution:
            groups.append([])
        groups[-1].append(sample_id)
        last = score
    return groups


def agreement_with_consensus(
    rankings_by_task: Mapping[int, Mapping[int, Groups]],
) -> dict[int, float]:
    """Per annotator, mean pairwise agreement with the consensus of the OTHER annotators of
    the same task (a Bradley-Terry fit on their rankings), over tasks with ≥ 2 annotators.

    Leaving the annotator out keeps a lone dissenter from pulling the consensus toward
    themselves. Annotators with no such task are absent from the result.
    """
    per_annotator: dict[int, list[float]] = {}
    for rankings in rankings_by_task.values():
        if len(rankings) < 2:
            continue
        for annotator, groups in rankings.items():
            others = [r for other, r in rankings.items() if other != annotator]
            consensus = _scores_to_groups(consensus_scores(others))
            agreement = pairwise_agreement(groups, consensus)
            if agreement is not None:
                per_annotator.setdefault(annotator, []).append(agreement)
    return {annotator: fmean(values) for annotator, values in sorted(per_annotator.items())}


def outlier_annotators(
    votes: Iterable[tuple[int, int, int, float]],
    ratings: Mapping[int, float],
    alpha: float = 0.05,
    min_votes: int = 5,
) -> dict[int, float]:
    """Judges whose votes are implausible under the ratings: {annotator: ln M}, flagged only.

    Arena's test: M = Π 1/(2p), p the probability of each vote under the ratings. Under the
    null (votes drawn from the model) E[1/(2p)] = 1, so M is a test martingale and
    P(M ≥ 1/α) ≤ α (Ville). Ties are skipped: the model gives them no probability, and any
    half-win scoring of a tie makes its factor ≥ 1, which would flag judges for tying often.
    min_votes counts decisive votes; votes on items without a rating are skipped.
    Accumulated in log space: a hundred contrary votes would overflow M.
    """
    log_m: dict[int, float] = {}
    n_votes: dict[int, int] = {}
    for annotator, a, b, outcome_a in votes:
        if outcome_a == 0.5 or a not in ratings or b not in ratings:
            continue
        # d = ln-odds that the judge's pick beats the other one, under the ratings.
        d = LN10 * (ratings[a] - ratings[b]) / SCALE
        if outcome_a < 0.5:
            d = -d
        log_p = -math.log1p(math.exp(-d)) if d > -30 else d  # ln σ(d)
        log_m[annotator] = log_m.get(annotator, 0.0) - math.log(2.0) - log_p
        n_votes[annotator] = n_votes.get(annotator, 0) + 1
    threshold = math.log(1.0 / alpha)
    return {
        annotator: value
        for annotator, value in sorted(log_m.items())
        if n_votes[annotator] >= min_votes and value > threshold
    }
