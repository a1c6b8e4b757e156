"""The loop suite's figures: the labels' ceiling and Kendall τ of two orderings of versions."""

from __future__ import annotations

import pytest

from app.simulation.metrics import kendall_tau, label_ceiling
from app.simulation.preferences import keyword


def test_ceiling_counts_agreeing_pairs_and_half_of_the_ties() -> None:
    pairs = [
        ("please", "no"),  # the preference agrees: 1
        ("no", "please please"),  # it disagrees: 0
        ("yes", "no"),  # it cannot tell them apart: 0.5
        ("please, please", "please"),  # agrees: 1
    ]
    assert label_ceiling(pairs, keyword("please")) == pytest.approx(2.5 / 4)


def test_ceiling_of_no_rankings_is_unknown() -> None:
    assert label_ceiling([], keyword("please")) is None


def test_tau_is_one_for_the_same_order_and_minus_one_for_the_reverse() -> None:
    same = [(0.1, 1000.0), (0.5, 1040.0), (0.9, 1100.0)]
    reverse = [(0.1, 1100.0), (0.5, 1040.0), (0.9, 1000.0)]
    assert kendall_tau([same]) == pytest.approx(1.0)
    assert kendall_tau([reverse]) == pytest.approx(-1.0)


def test_tau_pools_pairs_within_seeds_never_across() -> None:
    # Each seed is ordered alike; across seeds the scores would disagree, which must not count.
    seed_a = [(0.0, 10.0), (1.0, 20.0)]
    seed_b = [(5.0, 1.0), (6.0, 2.0)]
    assert kendall_tau([seed_a, seed_b]) == pytest.approx(1.0)
    assert kendall_tau([seed_a, list(reversed([(5.0, 2.0), (6.0, 1.0)]))]) == pytest.approx(0.0)


def test_tau_b_discounts_ties_in_one_ordering() -> None:
    # Pairs: (1,2) tied in y, (1,3) and (2,3) concordant → 2 / sqrt(3 * 2).
    items = [(0.0, 1.0), (1.0, 1.0), (2.0, 2.0)]
    assert kendall_tau([items]) == pytest.approx(2 / 6**0.5)


def test_tau_without_ordered_pairs_is_unknown() -> None:
    assert kendall_tau([[(1.0, 2.0)], []]) is None
    assert kendall_tau([[(1.0, 2.0), (1.0, 2.0)]]) is None
