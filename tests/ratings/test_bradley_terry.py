"""Bradley-Terry: aggregation, the fit against truth and against a direct optimiser, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from app.ratings import bradley_terry as bt
from app.ratings.bradley_terry import (
    BETTER,
    LN10,
    UNDECIDED,
    WORSE,
    aggregate,
    consensus_scores,
    difference_interval,
    fit,
    fit_ratings,
    verdict,
)
from app.ratings.elo import elo_ratings
from app.ratings.pairs import Pair

RATING_MATH = settings(derandomize=True, deadline=None, max_examples=30)


def simulate(
    beta: np.ndarray, per_pair: int, tie_share: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per_pair` comparisons of every pair of items (ids 10, 20, ...), ties included.

    A tie has probability tie_share · 2 min(p, 1 − p), taken evenly from wins and losses, so
    a's expected score stays p = P(a beats b) and the half-win likelihood stays unbiased.
    """
    rng = np.random.default_rng(seed)
    a, b = np.triu_indices(len(beta), 1)
    a, b = np.repeat(a, per_pair), np.repeat(b, per_pair)
    p = expit(LN10 * (beta[a] - beta[b]))
    tie_p = tie_share * 2.0 * np.minimum(p, 1.0 - p)
    u = rng.random(len(a))
    ties = u < tie_p
    a_wins = (u >= tie_p) & (u < p + tie_p / 2.0)
    winners = np.where(a_wins, a, b) * 10 + 10
    losers = np.where(a_wins, b, a) * 10 + 10
    order = rng.permutation(len(a))
    return winners[order], losers[order], ties[order]


def beta_of(result: bt.BTResult) -> np.ndarray:
    return (result.ratings - 1000.0) / 400.0


strengths = st.lists(st.floats(0.25, 0.6), min_size=2, max_size=5).map(
    lambda gaps: np.cumsum([0.0, *gaps])
)


# Aggregation


def test_aggregate_counts_unique_rows_and_splits_ties_half_each_way() -> None:
    winners = np.array([5, 5, 9, 9, 5, 7])
    losers = np.array([9, 9, 5, 5, 7, 5])
    ties = np.array([False, False, False, True, False, False])

    agg = aggregate(winners, losers, ties)

    assert agg.ids.tolist() == [5, 7, 9]
    rows = set(
        zip(
            agg.ids[agg.row_a].tolist(),
            agg.ids[agg.row_b].tolist(),
            agg.row_outcome.tolist(),
            agg.row_count.tolist(),
            strict=True,
        )
    )
    assert rows == {(5, 9, 1.0, 2), (5, 9, 0.0, 1), (5, 9, 0.5, 1), (5, 7, 1.0, 1), (5, 7, 0.0, 1)}
    np.testing.assert_array_equal(
        agg.wins,  # rows/columns: items 5, 7, 9
        [[0.0, 1.0, 2.5], [1.0, 0.0, 0.0], [1.5, 0.0, 0.0]],
    )
    assert agg.counts.tolist() == [6, 2, 4]
    assert agg.n_comparisons == 6


def test_aggregate_drops_self_comparisons() -> None:
    agg = aggregate(np.array([1, 2, 1]), np.array([1, 1, 2]), np.zeros(3, dtype=bool))

    assert agg.n_comparisons == 2
    assert agg.counts.tolist() == [2, 2]


def test_aggregate_handles_huge_and_negative_ids_like_small_ones() -> None:
    winners, losers = np.array([3, 3, 1, 2]), np.array([1, 2, 2, 3])
    ties = np.array([False, False, True, False])
    offset = 10**15

    small = aggregate(winners, losers, ties)
    huge = aggregate(winners * offset, losers * offset, ties)
    negative = aggregate(-winners, -losers, ties)

    assert huge.ids.tolist() == [offset, 2 * offset, 3 * offset]
    np.testing.assert_array_equal(small.wins, huge.wins)
    np.testing.assert_array_equal(small.wins[::-1, ::-1], negative.wins)


def test_weight_two_counts_like_a_repeated_comparison() -> None:
    winners, losers = np.array([1, 2, 3, 1]), np.array([2, 3, 1, 3])
    ties = np.array([False, True, False, False])

    weighted = aggregate(winners, losers, ties, weights=np.array([2.0, 1.0, 1.0, 1.0]))
    repeated = aggregate(np.append(winners, 1), np.append(losers, 2), np.append(ties, False))

    np.testing.assert_array_equal(weighted.wins, repeated.wins)
    np.testing.assert_allclose(fit(weighted), fit(repeated), atol=1e-9)


# Fit against the truth


@RATING_MATH
@given(
    beta=strengths,
    per_pair=st.sampled_from([500, 2000, 8000]),
    tie_share=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_fit_recovers_true_strengths_within_a_shrinking_tolerance(
    beta: np.ndarray, per_pair: int, tie_share: float, seed: int
) -> None:
    beta = beta - beta.mean()

    result = fit_ratings(*simulate(beta, per_pair, tie_share, seed), bootstrap=0)

    # 5 standard errors from the Fisher information of each item's games: ∝ 1/sqrt(per_pair).
    p = expit(LN10 * (beta[:, None] - beta[None, :]))
    info = LN10**2 * per_pair * (p * (1.0 - p)).sum(axis=1) - LN10**2 * per_pair * 0.25
    tolerance = 5.0 / np.sqrt(info)
    assert np.all(np.abs(beta_of(result) - beta) < tolerance)
    assert np.argsort(result.ratings).tolist() == list(range(len(beta)))


def test_unbeaten_item_gets_a_finite_top_rating() -> None:
    winners = np.array([1] * 20 + [2] * 5)
    losers = np.array([2] * 10 + [3] * 10 + [3] * 5)

    result = fit_ratings(winners, losers, np.zeros(25, dtype=bool), bootstrap=20)

    assert np.all(np.isfinite(result.ratings))
    assert np.argsort(-result.ratings).tolist() == [0, 1, 2]
    assert result.ratings.mean() == pytest.approx(1000.0)


def test_no_comparisons_give_an_empty_result() -> None:
    empty = np.array([], dtype=np.int64)

    result = fit_ratings(empty, empty, empty.astype(bool))

    assert result.ids.tolist() == []
    assert result.as_dict() == {}
    assert result.n_comparisons == 0


def test_fit_rejects_a_non_positive_prior() -> None:
    agg = aggregate(np.array([1]), np.array([2]), np.array([False]))

    with pytest.raises(ValueError, match="prior"):
        fit(agg, prior=0.0)


# Order invariance


@RATING_MATH
@given(
    comparisons=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.booleans()).filter(
            lambda c: c[0] != c[1]
        ),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**16),
)
def test_fit_does_not_depend_on_the_order_of_comparisons(
    comparisons: list[tuple[int, int, bool]], seed: int
) -> None:
    winners, losers, ties = (np.array(column) for column in zip(*comparisons, strict=True))
    order = np.random.default_rng(seed).permutation(len(winners))

    first = fit_ratings(winners, losers, ties, bootstrap=0)
    shuffled = fit_ratings(winners[order], losers[order], ties[order], bootstrap=0)

    np.testing.assert_allclose(first.ratings, shuffled.ratings, rtol=0, atol=1e-8)


def test_same_votes_in_another_order_change_elo_but_not_bradley_terry() -> None:
    votes = [Pair(1, 2, False), Pair(2, 1, False)]

    def bradley_terry(pairs: list[Pair]) -> np.ndarray:
        winners = np.array([p.winner for p in pairs])
        losers = np.array([p.loser for p in pairs])
        return fit_ratings(winners, losers, np.zeros(len(pairs), dtype=bool), bootstrap=0).ratings

    assert elo_ratings(votes)[1] != pytest.approx(elo_ratings(votes[::-1])[1], abs=1e-3)
    np.testing.assert_allclose(bradley_terry(votes), bradley_terry(votes[::-1]), atol=1e-9)
    np.testing.assert_allclose(bradley_terry(votes), [1000.0, 1000.0], atol=1e-9)


# Against a direct per-row optimisation of the same likelihood


def per_row_fit(
    winners: np.ndarray, losers: np.ndarray, ties: np.ndarray, weights: np.ndarray, prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, centred β) from scipy's BFGS on the per-comparison log-likelihood plus the prior."""
    ids, index = np.unique(np.concatenate([winners, losers]), return_inverse=True)
    w, lo = index[: len(winners)], index[len(winners) :]
    y = np.where(ties, 0.5, 1.0)  # score of the listed winner
    ridge = prior * LN10**2 / 4.0

    def loss_and_grad(beta: np.ndarray) -> tuple[float, np.ndarray]:
        d = LN10 * (beta[w] - beta[lo])
        loss = -np.sum(weights * (y * log_expit(d) + (1.0 - y) * log_expit(-d)))
        row_grad = -LN10 * weights * (y - expit(d))
        grad = np.bincount(w, row_grad, len(ids)) - np.bincount(lo, row_grad, len(ids))
        return loss + ridge / 2.0 * beta @ beta, grad + ridge * beta

    result = minimize(
        loss_and_grad, np.zeros(len(ids)), jac=True, method="BFGS", options={"gtol": 1e-10}
    )
    # The loss is ridge-strongly convex, so |β − β*| ≤ |gradient| / ridge: close enough to
    # judge 1e-6 even when BFGS stops short of gtol on rounding ("precision loss").
    assert np.linalg.norm(result.jac) / ridge < 1e-7, result.message
    return ids, result.x - result.x.mean()


@RATING_MATH
@given(
    comparisons=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 4),
            st.booleans(),
            st.sampled_from([1.0, 0.5, 2.0]),
        ).filter(lambda c: c[0] != c[1]),
        min_size=1,
        max_size=40,
    ),
    prior=st.sampled_from([0.25, 1.0, 4.0]),
)
def test_fit_matches_scipy_on_the_per_row_likelihood(
    comparisons: list[tuple[int, int, bool, float]], prior: float
) -> None:
    winners, losers, ties, weights = (np.array(column) for column in zip(*comparisons, strict=True))

    ids, expected = per_row_fit(winners, losers, ties, weights, prior)
    agg = aggregate(winners, losers, ties, weights)

    np.testing.assert_array_equal(agg.ids, ids)
    np.testing.assert_allclose(fit(agg, prior), expected, rtol=0, atol=1e-6)


def test_sparse_hessian_path_matches_the_dense_one(monkeypatch: pytest.MonkeyPatch) -> None:
    winners, losers, ties = simulate(np.array([0.0, 0.3, 0.5, 1.1, 1.2]), 40, 0.3, seed=1)
    agg = aggregate(winners, losers, ties)
    dense = fit(agg)

    monkeypatch.setattr(bt, "DENSE_MAX_ITEMS", 0)

    np.testing.assert_allclose(fit(agg), dense, rtol=0, atol=1e-9)


def test_separate_prompts_are_each_centred_on_1000() -> None:
    """Samples of different prompts are never compared; the prior centres each group."""
    winners = np.array([1, 1, 2, 10, 10, 11, 12])
    losers = np.array([2, 3, 3, 11, 12, 12, 13])

    result = fit_ratings(winners, losers, np.zeros(7, dtype=bool), bootstrap=0)

    assert result.ratings[:3].mean() == pytest.approx(1000.0, abs=1e-6)
    assert result.ratings[3:].mean() == pytest.approx(1000.0, abs=1e-6)


# Bootstrap intervals


@settings(derandomize=True, deadline=None, max_examples=12)
@given(beta=strengths, seed=st.integers(0, 2**16))
def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_data(
    beta: np.ndarray, seed: int
) -> None:
    small = fit_ratings(*simulate(beta, 100, 0.3, seed), bootstrap=100, seed=seed)
    large = fit_ratings(*simulate(beta, 1600, 0.3, seed), bootstrap=100, seed=seed)

    for result in (small, large):
        assert result.lower is not None
        assert result.upper is not None
        assert np.all(result.lower <= result.ratings)
        assert np.all(result.ratings <= result.upper)
    width_small = (small.upper - small.lower).mean()
    width_large = (large.upper - large.lower).mean()
    assert width_large < 0.4 * width_small  # 16× the data: about a quarter of the width


def test_bootstrap_is_reproducible_and_zero_rounds_give_no_intervals() -> None:
    data = simulate(np.array([0.0, 0.2, 0.4]), 50, 0.3, seed=3)

    first = fit_ratings(*data, bootstrap=30, seed=7)
    again = fit_ratings(*data, bootstrap=30, seed=7)
    none = fit_ratings(*data, bootstrap=0)

    assert first.samples is not None
    assert first.samples.shape == (30, 3)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert none.lower is None
    assert none.upper is None
    assert none.samples is None
    np.testing.assert_array_equal(none.ratings, first.ratings)


def test_as_dict_gives_rating_interval_and_comparisons_per_id() -> None:
    result = fit_ratings(np.array([4, 4, 6]), np.array([6, 8, 8]), np.zeros(3, dtype=bool))

    table = result.as_dict()

    assert sorted(table) == [4, 6, 8]
    rating, lower, upper, comparisons = table[4]
    assert lower is not None
    assert upper is not None
    assert lower <= rating <= upper
    assert comparisons == 2


def test_difference_interval_separates_a_clearly_better_version() -> None:
    winners, losers, ties = simulate(np.array([0.0, 0.0, 0.4]), 400, 0.3, seed=5)
    result = fit_ratings(winners, losers, ties, bootstrap=100)

    diff, lower, upper = difference_interval(result, new_id=30, old_id=20)
    same_diff, same_lower, same_upper = difference_interval(result, new_id=20, old_id=10)

    assert lower < diff < upper
    assert verdict(lower, upper) == BETTER
    assert verdict(-upper, -lower) == WORSE
    assert verdict(same_lower, same_upper) == UNDECIDED


def test_difference_interval_needs_bootstrap_samples_and_known_ids() -> None:
    data = (np.array([1, 2]), np.array([2, 3]), np.zeros(2, dtype=bool))

    with pytest.raises(ValueError, match="bootstrap"):
        difference_interval(fit_ratings(*data, bootstrap=0), 1, 2)
    with pytest.raises(KeyError):
        difference_interval(fit_ratings(*data, bootstrap=5), 1, 99)


@pytest.mark.parametrize(
    ("lower", "upper", "expected"),
    [(0.1, 30.0, BETTER), (-30.0, -0.1, WORSE), (-5.0, 5.0, UNDECIDED), (0.0, 5.0, UNDECIDED)],
)
def test_verdict_needs_the_whole_interval_on_one_side_of_zero(
    lower: float, upper: float, expected: str
) -> None:
    assert verdict(lower, upper) == expected


# Consensus of one prompt


def test_consensus_follows_the_majority_and_keeps_unanimous_ties_equal() -> None:
    rankings = [[[1], [2, 3], [4]], [[1], [3, 2], [4]], [[4], [1], [2, 3]], []]

    scores = consensus_scores(rankings)

    assert sorted(scores) == [1, 2, 3, 4]
    assert scores[1] > scores[2] > scores[4]
    assert scores[2] == pytest.approx(scores[3], abs=1e-6)


def test_consensus_of_no_rankings_is_empty() -> None:
    assert consensus_scores([[], []]) == {}
