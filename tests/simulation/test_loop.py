"""The loop's figure of merit: a paired bootstrap interval of the change in score."""

from __future__ import annotations

from worker.training.evaluation import paired_bootstrap_interval


def test_bootstrap_interval_is_above_zero_for_a_consistent_gain() -> None:
    before = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    after = [b + 0.5 + 0.1 * (i % 3) for i, b in enumerate(before)]
    low, high = paired_bootstrap_interval(before, after)
    assert 0.5 <= low <= high <= 0.7


def test_bootstrap_interval_straddles_zero_for_noise() -> None:
    before = [0.0] * 8
    after = [1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.2, -0.2]
    low, high = paired_bootstrap_interval(before, after)
    assert low < 0 < high
