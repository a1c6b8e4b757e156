"""Agreement between annotators, with the consensus, and Arena's outlier test, on hand cases."""

from __future__ import annotations

import math

import pytest

from app.ratings.agreement import (
    agreement_with_consensus,
    kendall_tau,
    outlier_annotators,
    pairwise_agreement,
    task_agreement,
)

ORDER = [[1], [2], [3], [4]]
REVERSED = [[4], [3], [2], [1]]


def test_identical_rankings_agree_fully() -> None:
    assert pairwise_agreement(ORDER, ORDER) == 1.0
    assert kendall_tau(ORDER, ORDER) == pytest.approx(1.0)


def test_reversed_rankings_never_agree() -> None:
    assert pairwise_agreement(ORDER, REVERSED) == 0.0
    assert kendall_tau(ORDER, REVERSED) == pytest.approx(-1.0)


def test_one_swapped_pair_out_of_three() -> None:
    a, b = [[1], [2], [3]], [[2], [1], [3]]

    assert pairwise_agreement(a, b) == pytest.approx(2 / 3)
    assert kendall_tau(a, b) == pytest.approx(1 / 3)  # (2 concordant - 1 discordant) / 3


def test_a_tie_against_a_strict_order_is_a_disagreement_and_tau_b_corrects_for_it() -> None:
    a, b = [[1, 2], [3]], [[1], [2], [3]]

    assert pairwise_agreement(a, b) == pytest.approx(2 / 3)
    # tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = (2 - 0) / sqrt((3 - 1)(3 - 0))
    assert kendall_tau(a, b) == pytest.approx(2 / math.sqrt(6))


def test_only_samples_in_both_rankings_count() -> None:
    a, b = [[1], [2], [3]], [[3], [2], [4]]

    assert pairwise_agreement(a, b) == 0.0  # only 2 and 3 are shared, in opposite order
    assert kendall_tau(a, b) == pytest.approx(-1.0)


def test_no_shared_pair_gives_none() -> None:
    assert pairwise_agreement([[1], [2]], [[2], [3]]) is None
    assert kendall_tau([[1], [2]], [[3], [4]]) is None


def test_tau_is_undefined_when_one_ranking_ties_everything() -> None:
    all_tied = [[1, 2, 3]]

    assert kendall_tau(all_tied, [[1], [2], [3]]) is None
    assert pairwise_agreement(all_tied, [[1], [2], [3]]) == 0.0
    assert pairwise_agreement(all_tied, [[3, 2, 1]]) == 1.0


def test_task_agreement_averages_over_annotator_pairs() -> None:
    summary = task_agreement({7: ORDER, 8: ORDER, 9: REVERSED})

    assert summary["n_annotators"] == 3
    assert summary["n_annotator_pairs"] == 3
    assert summary["pairwise_agreement"] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    assert summary["kendall_tau"] == pytest.approx(-1 / 3)  # (1 - 1 - 1) / 3


def test_task_agreement_of_a_single_annotator_has_no_means() -> None:
    summary = task_agreement({7: ORDER})

    assert summary["pairwise_agreement"] is None
    assert summary["kendall_tau"] is None


def test_agreement_with_consensus_of_the_others() -> None:
    by_task = {
        1: {10: ORDER, 11: ORDER, 12: ORDER, 13: REVERSED},
        2: {10: [[5], [6]], 13: [[5], [6]]},
        3: {14: ORDER},  # a lone annotator has no one to agree with
    }

    scores = agreement_with_consensus(by_task)

    assert scores == pytest.approx({10: 1.0, 11: 1.0, 12: 1.0, 13: 0.5})  # 13: (0 + 1) / 2


def test_consensus_ties_where_the_others_split_evenly() -> None:
    """10 and 11 disagree on 1 vs 2; for 12 the others' consensus ties them."""
    by_task = {1: {10: [[1], [2], [3]], 11: [[2], [1], [3]], 12: [[1, 2], [3]]}}

    scores = agreement_with_consensus(by_task)

    assert scores[12] == pytest.approx(1.0)
    # 10 against the consensus of 11 and 12 (2 ahead of 1): agrees on 2 pairs of 3.
    assert scores[10] == pytest.approx(2 / 3)


def test_consensus_leaves_the_annotator_out() -> None:
    """With themselves included, 11 and 12 would agree with a 2-to-1 majority they make up."""
    by_task = {1: {10: [[1], [2]], 11: [[2], [1]], 12: [[2], [1]]}}

    scores = agreement_with_consensus(by_task)

    # 10 faces 11 + 12 (2 ahead of 1); 11 faces 10 + 12, an even split: a tie, not their order.
    assert scores == pytest.approx({10: 0.0, 11: 0.0, 12: 0.0})


RATINGS = {1: 1200.0, 2: 1000.0, 3: 800.0}


def test_outlier_test_flags_a_judge_who_always_votes_against_the_ratings() -> None:
    contrary = [(10, 2, 1, 1.0), (10, 1, 2, 0.0), (10, 3, 2, 1.0)] * 2
    consistent = [(11, 1, 2, 1.0), (11, 2, 3, 1.0), (11, 3, 1, 0.0)] * 2

    flagged = outlier_annotators(contrary + consistent, RATINGS)

    p_upset = 1.0 / (1.0 + 10.0**0.5)  # a 200-point underdog wins
    assert flagged == pytest.approx({10: 6 * math.log(1.0 / (2.0 * p_upset))})


def test_outlier_test_needs_min_votes_and_skips_ties_and_unrated_items() -> None:
    few = [(12, 3, 1, 1.0)] * 4  # log M = 4 ln(5.5) = 6.8 > ln 20, but only 4 votes
    ties = [(13, 3, 1, 0.5)] * 50
    unrated = [(14, 99, 1, 1.0)] * 50

    assert outlier_annotators(few + ties + unrated, RATINGS) == {}
    assert 12 in outlier_annotators(few, RATINGS, min_votes=4)


def test_outlier_threshold_follows_alpha() -> None:
    votes = [(10, 2, 1, 1.0)] * 5  # log M = 5 ln(2.08) = 3.67: beyond 1/0.05, not 1/0.01

    assert 10 in outlier_annotators(votes, RATINGS, alpha=0.05)
    assert outlier_annotators(votes, RATINGS, alpha=0.01) == {}


def test_outlier_test_stays_finite_for_hopeless_votes() -> None:
    votes = [(10, 2, 1, 1.0)] * 5

    flagged = outlier_annotators(votes, {1: 100_000.0, 2: 0.0})

    assert math.isfinite(flagged[10])
    assert flagged[10] > 1000
