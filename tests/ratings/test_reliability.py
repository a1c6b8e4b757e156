"""The annotator reliability model on synthetic crowds: it recovers a reversed annotator, ranks
annotators by their true noise, keeps η and its interval coherent, reads gold answers, and the
weighted Bradley-Terry fits equal the unweighted ones when every weight is the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.models.annotator import FLAG_CHANCE, FLAG_REVERSED
from app.ratings.bradley_terry import fit_ratings
from app.ratings.leaderboard import fit_by_ranking
from app.ratings.pairs import ranking_to_pairs
from app.ratings.reliability import (
    GoldAnswers,
    ReliabilityConfig,
    ReliabilityFit,
    fit_reliability,
    gold_answers,
    gold_truth,
)

CROWD_MATH = settings(derandomize=True, deadline=None, max_examples=8)


@dataclass(frozen=True)
class Crowd:
    user: np.ndarray
    ranking: np.ndarray
    task: np.ndarray
    winner: np.ndarray
    loser: np.ndarray
    tie: np.ndarray

    def fit(self, **kwargs: Any) -> ReliabilityFit:
        return fit_reliability(
            self.user, self.ranking, self.task, self.winner, self.loser, self.tie, **kwargs
        )


def crowd(
    noise: list[float],
    reversed_: set[int] = frozenset(),  # type: ignore[assignment]
    *,
    tasks: int,
    per_task: int,
    k: int = 4,
    seed: int = 0,
) -> Crowd:
    """Tasks of k samples with true qualities N(0, 1); each ranked by `per_task` annotators
    drawn at random, who sort by quality plus N(0, noise[u]) (reversed ones sort worst first)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[int]] = {c: [] for c in ("user", "ranking", "task", "w", "l", "tie")}
    ranking = 0
    for task in range(tasks):
        ids = np.arange(task * k, task * k + k)
        quality = rng.normal(0.0, 1.0, k)
        for user in rng.choice(len(noise), per_task, replace=False).tolist():
            order = ids[np.argsort(-(quality + rng.normal(0.0, noise[user], k)))]
            if user in reversed_:
                order = order[::-1]
            ranking += 1
            for pair in ranking_to_pairs([[int(i)] for i in order]):
                for key, value in (
                    ("user", user),
                    ("ranking", ranking),
                    ("task", task),
                    ("w", pair.winner),
                    ("l", pair.loser),
                    ("tie", pair.tie),
                ):
                    cols[key].append(int(value))
    user, ranking_, task_, winner, loser = (
        np.asarray(cols[c], dtype=np.int64) for c in ("user", "ranking", "task", "w", "l")
    )
    return Crowd(user, ranking_, task_, winner, loser, np.asarray(cols["tie"], dtype=bool))


# The model recovers what it should


@CROWD_MATH
@given(
    good=st.integers(3, 6),
    noise=st.sampled_from([0.3, 0.6]),
    per_task=st.sampled_from([2, 3]),
    seed=st.integers(0, 2**16),
)
def test_a_reversed_minority_annotator_is_recovered(
    good: int, noise: float, per_task: int, seed: int
) -> None:
    # Their own comparisons are in the fit, and on two-annotator tasks they are half the data
    reversed_user = good
    data = crowd(
        [noise] * (good + 1), {reversed_user}, tasks=40 * (good + 1), per_task=per_task, seed=seed
    )

    fitted = data.fit(min_tasks=10).by_user()

    assert fitted[reversed_user].reliability < 0.5
    assert fitted[reversed_user].upper < 0.5
    assert fitted[reversed_user].flag == FLAG_REVERSED
    assert "agrees with the consensus on" in (fitted[reversed_user].evidence or "")
    assert fitted[reversed_user].weight == ReliabilityConfig().weight_floor
    for user in range(good):
        assert fitted[user].reliability > 0.5
        assert fitted[user].flag is None


@settings(derandomize=True, deadline=None, max_examples=4)
@given(seed=st.integers(0, 2**16))
def test_with_weak_preferences_nobody_honest_is_called_reversed(seed: int) -> None:
    """Three annotators a task and a signal near chance: Crowd-BT can settle where honest
    annotators look reversed; the flag needs the raw votes (or gold) to agree, so it stays off."""
    noise = [4.0] * 18 + [4.0, 4.0]
    data = crowd(noise, {18, 19}, tasks=300, per_task=3, seed=seed)

    fitted = data.fit(min_tasks=10).by_user()

    wrongly = [u for u in range(18) if fitted[u].flag == FLAG_REVERSED]
    assert wrongly == []


@CROWD_MATH
@given(seed=st.integers(0, 2**16), per_task=st.sampled_from([3, 4]))
def test_annotators_are_ranked_by_their_true_noise(seed: int, per_task: int) -> None:
    noise = [0.2, 0.2, 1.0, 1.0, 3.0, 3.0]
    data = crowd(noise, tasks=150, per_task=per_task, seed=seed)

    fitted = data.fit(min_tasks=10).by_user()

    eta = [fitted[u].reliability for u in range(len(noise))]
    assert min(eta[0:2]) > max(eta[2:4])
    assert min(eta[2:4]) > max(eta[4:6])
    weights = [fitted[u].weight for u in range(len(noise))]
    assert min(weights[0:2]) > max(weights[2:4]) > 0
    assert max(weights) == pytest.approx(1.0)  # the most reliable counts like a newcomer


def test_an_annotator_at_chance_is_flagged_chance() -> None:
    data = crowd([0.3, 0.3, 0.3, 0.3, 100.0], tasks=200, per_task=3, seed=3)

    fitted = data.fit(min_tasks=10).by_user()

    assert fitted[4].flag == FLAG_CHANCE
    assert 0.35 < fitted[4].lower < 0.5 < fitted[4].upper < 0.65
    assert all(fitted[u].flag is None for u in range(4))


@CROWD_MATH
@given(
    users=st.integers(1, 5),
    tasks=st.integers(1, 30),
    per_task=st.integers(1, 3),
    k=st.integers(2, 5),
    seed=st.integers(0, 2**16),
    reversed_=st.sets(st.integers(0, 4), max_size=2),
)
def test_eta_and_its_interval_stay_coherent(
    users: int, tasks: int, per_task: int, k: int, seed: int, reversed_: set[int]
) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.0, 3.0, users).tolist()
    data = crowd(noise, reversed_, tasks=tasks, per_task=min(per_task, users), k=k, seed=seed)
    floor = ReliabilityConfig().weight_floor

    fitted = data.fit(min_tasks=5)

    assert {a.user_id for a in fitted.annotators} == set(data.user.tolist())
    for a in fitted.annotators:
        assert 0.0 <= a.lower <= a.reliability <= a.upper <= 1.0
        assert floor <= a.weight <= 1.0
        assert a.comparisons <= int(np.sum(data.user == a.user_id))
        if a.shared_tasks < 5:
            assert (a.weight, a.flag) == (1.0, None)
    assert np.all(np.isfinite(fitted.beta))


def test_a_task_nobody_else_ranked_does_not_measure_the_annotator() -> None:
    alone = crowd([0.3], tasks=30, per_task=1)

    (fit,) = alone.fit(min_tasks=1).annotators

    assert (fit.comparisons, fit.shared_tasks) == (0, 0)
    assert fit.reliability == pytest.approx(2 / 3)  # the prior alone
    assert (fit.weight, fit.flag) == (1.0, None)  # below min_tasks


def test_an_excluded_annotator_is_measured_but_moves_nothing() -> None:
    data = crowd([0.3, 0.3, 0.3, 0.3], {3}, tasks=120, per_task=3, seed=1)
    rates = data.user != 3
    without = Crowd(*(np.asarray(c)[rates] for c in data.__dict__.values()))

    measured = data.fit(rates=rates, min_tasks=10)
    reference = without.fit(min_tasks=10)

    np.testing.assert_array_equal(measured.ids, reference.ids)
    np.testing.assert_allclose(measured.beta, reference.beta, atol=1e-3)
    assert measured.by_user()[3].flag == FLAG_REVERSED
    for user in range(3):
        assert measured.by_user()[user].reliability == pytest.approx(
            reference.by_user()[user].reliability, abs=1e-3
        )


def test_when_every_annotator_is_excluded_nobody_is_measured_and_nothing_fails() -> None:
    data = crowd([0.3, 0.3], set(), tasks=20, per_task=2, seed=2)

    fitted = data.fit(rates=np.zeros(len(data.user), bool), min_tasks=1)

    assert {row.shared_tasks for row in fitted.by_user().values()} == {0}
    assert all(row.flag is None for row in fitted.by_user().values())


# Gold answers


def test_gold_truth_reads_the_known_ordering_or_the_known_bad_sample() -> None:
    groups = [[1], [2, 3], [4]]
    assert gold_truth(1, 4, False, groups, None) is True
    assert gold_truth(4, 2, False, groups, None) is False
    assert gold_truth(2, 3, False, groups, None) is None  # tied in the truth
    assert gold_truth(1, 4, True, groups, None) is None  # tied in the answer
    assert gold_truth(1, 9, False, groups, None) is None  # not in the ordering
    assert gold_truth(1, 7, False, None, 7) is True
    assert gold_truth(7, 1, False, None, 7) is False
    assert gold_truth(1, 2, False, None, 7) is None
    assert gold_truth(4, 1, False, groups, 4) is False  # the ordering wins


def test_gold_answers_feed_eta_and_never_the_strengths() -> None:
    data = crowd([0.3, 0.3, 0.3], tasks=60, per_task=2, seed=2)
    # User 2 got all 12 gold pairs wrong on 3 gold tasks; user 0 got them right
    rows = [
        (
            user,
            1000 + task,
            500 + task,
            winner,
            loser,
            False,
            [[10_000 + 2 * task], [10_001 + 2 * task]],
            None,
        )
        for task in range(3)
        for user, (winner, loser) in (
            (0, (10_000 + 2 * task, 10_001 + 2 * task)),
            (2, (10_001 + 2 * task, 10_000 + 2 * task)),
        )
        for _ in range(4)
    ]
    gold = gold_answers(rows)

    plain = data.fit(min_tasks=1).by_user()
    with_gold = data.fit(gold=gold, min_tasks=1)
    by_user = with_gold.by_user()

    assert by_user[2].gold_answered == 12
    assert by_user[2].gold_correct == 0
    assert by_user[0].gold_correct == 12
    assert by_user[2].reliability < plain[2].reliability
    assert by_user[2].shared_tasks == plain[2].shared_tasks + 3
    assert not np.isin(np.arange(10_000, 10_006), with_gold.ids).any()


def test_gold_answers_alone_measure_an_annotator() -> None:
    wrong = GoldAnswers(
        user=np.full(40, 7),
        ranking=np.repeat(np.arange(10), 4),
        task=np.repeat(np.arange(10), 4),
        correct=np.zeros(40, bool),
    )
    empty = np.zeros(0, dtype=np.int64)

    (fit,) = fit_reliability(
        empty, empty, empty, empty, empty, np.zeros(0, bool), gold=wrong, min_tasks=10
    ).annotators

    assert fit.user_id == 7
    assert (fit.gold_answered, fit.gold_correct, fit.shared_tasks) == (40, 0, 10)
    assert fit.flag == FLAG_REVERSED
    assert "gold 0/40 pairs right" in (fit.evidence or "")


# Weighted Bradley-Terry


comparisons = st.integers(0, 2**16).map(
    lambda seed: crowd([0.5, 1.0], tasks=12, per_task=2, k=3, seed=seed)
)


@settings(derandomize=True, deadline=None, max_examples=15)
@given(data=comparisons, weight=st.floats(0.05, 20.0))
def test_equal_weights_give_the_unweighted_fit(data: Crowd, weight: float) -> None:
    same = np.full(len(data.winner), weight)

    weighted = fit_by_ranking(
        data.winner, data.loser, data.tie, data.ranking, bootstrap=20, weights=same
    )
    plain = fit_by_ranking(data.winner, data.loser, data.tie, data.ranking, bootstrap=20)

    np.testing.assert_allclose(weighted.ratings, plain.ratings, atol=1e-6)
    assert weighted.lower is not None
    assert weighted.upper is not None
    assert plain.lower is not None
    assert plain.upper is not None
    np.testing.assert_allclose(weighted.lower, plain.lower, atol=1e-3)
    np.testing.assert_allclose(weighted.upper, plain.upper, atol=1e-3)


@settings(derandomize=True, deadline=None, max_examples=15)
@given(data=comparisons, weight=st.floats(0.05, 20.0))
def test_fit_ratings_weights_scale_against_the_prior(data: Crowd, weight: float) -> None:
    # fit_ratings keeps weights as counts: weight c with prior c is the unweighted fit
    same = np.full(len(data.winner), weight)

    ones = fit_ratings(data.winner, data.loser, data.tie, bootstrap=0, weights=same / weight)
    scaled = fit_ratings(data.winner, data.loser, data.tie, bootstrap=0, weights=same, prior=weight)
    plain = fit_ratings(data.winner, data.loser, data.tie, bootstrap=0)

    np.testing.assert_allclose(ones.ratings, plain.ratings, atol=1e-6)
    np.testing.assert_allclose(scaled.ratings, plain.ratings, atol=1e-6)


def test_a_down_weighted_annotator_moves_the_fit_less() -> None:
    winners, losers = np.array([1, 1, 1, 2, 2, 2]), np.array([2, 2, 2, 1, 1, 1])
    ties, rankings = np.zeros(6, bool), np.arange(6)
    trusted_first = np.array([1.0, 1.0, 1.0, 0.05, 0.05, 0.05])

    fitted = fit_by_ranking(winners, losers, ties, rankings, weights=trusted_first)

    assert fitted.ratings[0] > fitted.ratings[1]
    with pytest.raises(ValueError, match="one entry per comparison"):
        fit_by_ranking(winners, losers, ties, rankings, weights=np.ones(3))
