"""Position bias math: the first-card rate against chance, and the Bradley-Terry fit with a
first-card term (recovers γ, reduces to the plain fit when positions carry nothing)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from app.ratings.bradley_terry import LN10, aggregate, fit, fit_ratings
from app.ratings.leaderboard import fit_by_ranking
from app.ratings.position import (
    MIN_RANKINGS,
    PositionInput,
    aggregate_positions,
    corrected_by_ranking,
    first_card_rate,
    first_card_score,
    first_flags,
    fit_position,
    fit_samples,
    position_corrected_fit,
    wilson,
)

RATING_MATH = settings(derandomize=True, deadline=None, max_examples=25)


def simulate(
    beta: np.ndarray, gamma: float, rankings: int, k: int, seed: int
) -> tuple[np.ndarray, ...]:
    """`rankings` displays of k of the items (ids 10, 20, ...), each pair of a display judged
    under the first-card model with the first-shown card at index 0 of the display:
    (winners, losers, ties, ranking ids, winner first, loser first)."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(k), 2))
    shown = np.stack([rng.choice(len(beta), k, replace=False) for _ in range(rankings)])
    i, j = np.array(pairs).T  # places in the display, i < j
    a, b = shown[:, i].ravel(), shown[:, j].ravel()  # (rankings · C(k, 2),)
    d = np.tile((i == 0).astype(float), rankings)  # a is shown first when i == 0
    a_wins = rng.random(len(a)) < expit(LN10 * (beta[a] - beta[b]) + gamma * d)
    winners, losers = np.where(a_wins, a, b), np.where(a_wins, b, a)
    a_first = d == 1
    ranking = np.repeat(np.arange(rankings), len(pairs))
    return (
        winners * 10 + 10,
        losers * 10 + 10,
        np.zeros(len(a), bool),
        ranking,
        np.where(a_wins, a_first, False),
        np.where(a_wins, False, a_first),
    )


strengths = st.lists(st.floats(-0.5, 0.5), min_size=4, max_size=7).map(np.array)


# The first-card rate


def test_first_card_score_counts_a_tied_top_group_as_a_share() -> None:
    assert first_card_score([3, 1, 2], [[3], [1, 2]]) == 1.0
    assert first_card_score([3, 1, 2], [[1, 3], [2]]) == 0.5
    assert first_card_score([3, 1, 2], [[1], [2, 3]]) == 0.0


def test_rate_skips_none_usable_unordered_and_single_card_rankings() -> None:
    rate = first_card_rate(
        [([1, 2, 3], [[1], [2], [3]]), ([1, 2], []), ([], [[1], [2]]), ([5], [[5]])]
    )
    assert rate is not None
    assert (rate.rankings, rate.rate, rate.expected) == (1, 1.0, pytest.approx(1 / 3))
    assert first_card_rate([([1, 2], [])]) is None


def test_expected_rate_averages_one_over_the_cards_shown() -> None:
    rate = first_card_rate([([1, 2], [[2], [1]]), ([1, 2, 3, 4], [[2], [1], [3], [4]])])
    assert rate is not None
    assert rate.expected == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert rate.rate == 0.0


@given(successes=st.integers(0, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
@RATING_MATH
def test_wilson_interval_contains_the_rate_and_stays_in_the_unit_interval(
    successes: tuple[int, int],
) -> None:
    s, n = successes
    lower, upper = wilson(s, n)
    assert 0.0 <= lower <= upper <= 1.0
    if n:
        assert lower - 1e-12 <= s / n <= upper + 1e-12


def test_wilson_matches_the_score_test_at_the_boundary() -> None:
    """The expectation on an interval end is exactly |z| = 1.96 of the score test."""
    s, n = 40, 100
    lower, _ = wilson(s, n)
    z = (s / n - lower) / np.sqrt(lower * (1 - lower) / n)
    assert z == pytest.approx(1.959963984540054)


def _rankings(first_wins: int, others: int) -> list[tuple[list[int], list[list[int]]]]:
    """Four-card rankings: `first_wins` with the first-shown card on top, `others` with the
    second-shown on top."""
    return [([1, 2, 3, 4], [[1], [2], [3], [4]])] * first_wins + [
        ([1, 2, 3, 4], [[2], [1], [3], [4]])
    ] * others


def test_a_first_card_that_wins_far_above_chance_is_significant() -> None:
    rate = first_card_rate(_rankings(30, 30))  # 50% against 25%
    assert rate is not None
    assert rate.significant
    assert rate.lower > rate.expected
    assert rate.excess == pytest.approx(2.0)


def test_a_chance_rate_is_not_significant() -> None:
    rate = first_card_rate(_rankings(25, 75))
    assert rate is not None
    assert rate.lower <= rate.expected <= rate.upper
    assert not rate.significant


def test_too_few_rankings_are_never_significant() -> None:
    rate = first_card_rate(_rankings(MIN_RANKINGS - 1, 0))
    assert rate is not None
    assert rate.lower > rate.expected
    assert not rate.significant


def test_random_display_orders_keep_the_false_alarm_rate_near_five_percent() -> None:
    """Position-blind annotators, display orders shuffled as the queue does: the verdict
    fires in about α of the projects (conservative with mixed K)."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(400):
        rankings = []
        for _ in range(60):
            k = int(rng.integers(2, 6))
            order = rng.permutation(k).tolist()
            rankings.append((order, [[s] for s in range(k)]))  # the same truth every time
        rate = first_card_rate(rankings)
        assert rate is not None
        alarms += rate.significant
    assert alarms / 400 < 0.09


# Bradley-Terry with a first-card term


@given(beta=strengths, gamma=st.floats(0.4, 1.2), seed=st.integers(0, 2**16))
@RATING_MATH
def test_recovers_a_known_first_card_advantage(beta: np.ndarray, gamma: float, seed: int) -> None:
    w, lo, t, r, wf, lf = simulate(beta, gamma, rankings=600, k=4, seed=seed)
    fitted = fit_position(aggregate_positions(w, lo, t, wf, lf, rankings=r))
    assert fitted.gamma_lower is not None
    assert fitted.gamma_upper is not None
    assert abs(fitted.gamma - gamma) < 0.25
    assert fitted.gamma_lower > 0.0
    assert np.max(np.abs(fitted.beta - (beta - beta.mean()))) < 0.12


@given(beta=strengths, seed=st.integers(0, 2**16))
@RATING_MATH
def test_positions_without_signal_give_gamma_zero_and_the_plain_fit(
    beta: np.ndarray, seed: int
) -> None:
    """Every comparison also seen with the positions swapped: the likelihood is even in γ, so
    γ = 0 exactly and β is the plain fit of the same comparisons."""
    w, lo, t, r, wf, lf = simulate(beta, 0.8, rankings=60, k=4, seed=seed)
    both = (np.concatenate([w, w]), np.concatenate([lo, lo]), np.concatenate([t, t]))
    rows = aggregate_positions(
        *both, np.concatenate([wf, lf]), np.concatenate([lf, wf]), rankings=np.tile(r, 2)
    )
    fitted = fit_position(rows)
    assert fitted.gamma == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(fitted.beta, fit(aggregate(*both)), atol=1e-8)


def test_independent_positions_give_a_gamma_interval_around_zero() -> None:
    w, lo, t, r, wf, lf = simulate(np.linspace(-0.4, 0.4, 8), 0.0, rankings=800, k=4, seed=5)
    fitted = fit_position(aggregate_positions(w, lo, t, wf, lf, rankings=r))
    assert fitted.gamma_lower is not None
    assert fitted.gamma_upper is not None
    assert fitted.gamma_lower < 0.0 < fitted.gamma_upper
    assert abs(fitted.gamma) < 0.15


@given(beta=strengths, gamma=st.floats(-1.0, 1.0), seed=st.integers(0, 2**16))
@RATING_MATH
def test_gamma_fixed_at_zero_equals_fit_ratings(beta: np.ndarray, gamma: float, seed: int) -> None:
    w, lo, t, r, wf, lf = simulate(beta, gamma, rankings=40, k=3, seed=seed)
    fitted = fit_position(aggregate_positions(w, lo, t, wf, lf, rankings=r), fix_gamma=True)
    plain = fit_ratings(w, lo, t, bootstrap=0)
    assert fitted.gamma == 0.0
    np.testing.assert_array_equal(fitted.ids, plain.ids)
    np.testing.assert_allclose(400 * fitted.beta + 1000, plain.ratings, atol=1e-6)


def test_gamma_interval_is_clustered_by_ranking() -> None:
    """The same comparisons as one cluster per ranking give a wider interval than as
    independent votes: the pairs of one ranking with its first card move together."""
    w, lo, t, r, wf, lf = simulate(np.linspace(-0.3, 0.3, 6), 0.5, rankings=400, k=5, seed=2)
    by_ranking = fit_position(aggregate_positions(w, lo, t, wf, lf, rankings=r))
    # A ranking made of consistent pairs: duplicate each ranking's pairs so they co-vary.
    doubled = aggregate_positions(
        *(np.concatenate([x, x]) for x in (w, lo, t, wf, lf)), rankings=np.tile(r, 2)
    )
    votes = aggregate_positions(*(np.concatenate([x, x]) for x in (w, lo, t, wf, lf)))
    clustered, independent = fit_position(doubled), fit_position(votes)
    assert by_ranking.gamma_upper is not None
    assert clustered.gamma_upper is not None
    assert independent.gamma_upper is not None
    assert clustered.gamma == pytest.approx(independent.gamma)
    width = clustered.gamma_upper - clustered.gamma
    assert width > 1.3 * (independent.gamma_upper - independent.gamma)


def test_no_first_card_comparisons_leave_gamma_zero_without_interval() -> None:
    w, lo, t, r, _, _ = simulate(np.array([0.0, 0.2, 0.4]), 0.0, rankings=20, k=3, seed=1)
    none = np.zeros(len(w), bool)
    fitted = fit_position(aggregate_positions(w, lo, t, none, none, rankings=r))
    assert fitted.gamma == 0.0
    assert fitted.gamma_lower is None


def test_corrected_fit_removes_the_advantage_of_items_often_shown_first() -> None:
    """Equal items; item 10 is shown first in most displays. The plain fit rates it above the
    others; the corrected fit does not, and its interval covers the truth."""
    rng = np.random.default_rng(7)
    rankings, k, n_items = 500, 3, 6
    beta = np.zeros(n_items)
    shown = []
    for _ in range(rankings):
        rest = rng.choice(np.arange(1, n_items), k - 1, replace=False)
        order = [0, *rest] if rng.random() < 0.8 else [*rest, 0]
        shown.append(order)
    pairs = list(itertools.combinations(range(k), 2))
    w, lo, r, wf, lf = [], [], [], [], []
    for ranking, order in enumerate(shown):
        for i, j in pairs:
            a, b = order[i], order[j]
            d = float(i == 0)
            a_wins = rng.random() < expit(LN10 * (beta[a] - beta[b]) + 0.9 * d)
            w.append(10 * (a if a_wins else b) + 10)
            lo.append(10 * (b if a_wins else a) + 10)
            r.append(ranking)
            wf.append(bool(a_wins and i == 0))
            lf.append(bool(not a_wins and i == 0))
    w_, lo_, r_ = np.array(w), np.array(lo), np.array(r)
    ties = np.zeros(len(w_), bool)
    plain = fit_by_ranking(w_, lo_, ties, r_, bootstrap=40)
    corrected = position_corrected_fit(w_, lo_, ties, r_, np.array(wf), np.array(lf), bootstrap=40)
    assert plain.ratings[0] - 1000 > 60
    assert abs(corrected.result.ratings[0] - 1000) < 25
    assert corrected.result.lower is not None
    assert corrected.result.upper is not None
    assert corrected.result.lower[0] < 1000 < corrected.result.upper[0]
    assert corrected.position.gamma == pytest.approx(0.9, abs=0.2)


def test_corrected_fit_without_position_signal_is_fit_by_ranking() -> None:
    w, lo, t, r, _, _ = simulate(np.linspace(0, 0.5, 5), 0.0, rankings=50, k=3, seed=4)
    none = np.zeros(len(w), bool)
    corrected = position_corrected_fit(w, lo, t, r, none, none, bootstrap=20, seed=1)
    plain = fit_by_ranking(w, lo, t, r, bootstrap=20, seed=1)
    np.testing.assert_allclose(corrected.result.ratings, plain.ratings, atol=1e-6)
    assert corrected.result.lower is not None
    assert plain.lower is not None
    np.testing.assert_allclose(corrected.result.lower, plain.lower, atol=1e-3)
    np.testing.assert_array_equal(corrected.result.counts, plain.counts)


def test_first_flags_mark_the_card_shown_first_of_each_ranking() -> None:
    wf, lf = first_flags(
        np.array([1, 1, 2, 3]), np.array([5, 6, 7, 8]), np.array([6, 5, 9, 9]), {1: 5, 2: 9}
    )
    assert wf.tolist() == [True, False, False, False]
    assert lf.tolist() == [False, True, True, False]


def test_mismatched_columns_are_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        aggregate_positions(
            np.array([1]), np.array([2]), np.array([False]), np.array([]), np.array([])
        )


def test_weighted_corrected_fit_without_position_signal_is_the_weighted_fit_by_ranking() -> None:
    w, lo, t, r, _, _ = simulate(np.linspace(0, 0.5, 5), 0.0, rankings=50, k=3, seed=6)
    weights = np.random.default_rng(0).uniform(0.2, 3.0, len(w))
    none = np.zeros(len(w), bool)
    corrected = position_corrected_fit(w, lo, t, r, none, none, bootstrap=10, weights=weights)
    plain = fit_by_ranking(w, lo, t, r, bootstrap=10, weights=weights)
    unweighted = fit_by_ranking(w, lo, t, r, bootstrap=0)
    np.testing.assert_allclose(corrected.result.ratings, plain.ratings, atol=1e-6)
    assert np.max(np.abs(plain.ratings - unweighted.ratings)) > 1.0


def test_fit_samples_corrects_only_when_told() -> None:
    w, lo, t, r, wf, lf = simulate(np.linspace(0, 0.5, 5), 1.0, rankings=80, k=3, seed=8)
    first: dict[int, int] = {}
    for ranking, winner, loser, winner_first, loser_first in zip(r, w, lo, wf, lf, strict=True):
        if winner_first or loser_first:
            first[int(ranking)] = int(winner if winner_first else loser)
    flags = first_flags(r, w, lo, first)
    np.testing.assert_array_equal(flags[0], wf)
    np.testing.assert_array_equal(flags[1], lf)

    off = fit_samples(w, lo, t, r, PositionInput(first, correct=False))
    on = fit_samples(w, lo, t, r, PositionInput(first, correct=True))

    np.testing.assert_allclose(off.ratings, fit_by_ranking(w, lo, t, r).ratings)
    corrected = position_corrected_fit(w, lo, t, r, wf, lf).result
    np.testing.assert_allclose(on.ratings, corrected.ratings)
    assert np.max(np.abs(on.ratings - off.ratings)) > 1.0


def test_version_ratings_take_the_flags_of_their_samples() -> None:
    """Items are versions (two samples each); the flags still say which sample came first."""
    w, lo, t, r, wf, lf = simulate(np.linspace(0, 0.6, 6), 0.8, rankings=300, k=3, seed=9)
    version_of = {sample: 1 + (sample // 10) % 3 for sample in np.unique(np.r_[w, lo]).tolist()}
    wv = np.array([version_of[s] for s in w.tolist()])
    lv = np.array([version_of[s] for s in lo.tolist()])

    fitted = corrected_by_ranking(wv, lv, t, r, winner_first=wf, loser_first=lf, bootstrap=10)
    direct = position_corrected_fit(wv, lv, t, r, wf, lf, bootstrap=10).result

    np.testing.assert_array_equal(fitted.ids, [1, 2, 3])
    np.testing.assert_allclose(fitted.ratings, direct.ratings)
    plain = fit_by_ranking(wv, lv, t, r, bootstrap=0)
    assert np.max(np.abs(fitted.ratings - plain.ratings)) > 0.0
