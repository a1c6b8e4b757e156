"""The study planner's math on curves generated from a known law: it recovers the rankings
needed, its ranges hold its estimates, and a higher goal never needs fewer rankings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.projects.planner import (
    DEFAULT_MARGIN,
    PRIOR_EXPONENT,
    Plan,
    accuracy_plan,
    rankings_for_accuracy,
    verdict_plan,
    width_exponent,
)

RANKINGS = [250, 500, 1000, 2000]


def law(n: Sequence[int], a: float = 0.86, b: float = 1.1, c: float = 0.4) -> np.ndarray:
    return np.asarray(a - b * np.asarray(n, dtype=float) ** -c)


def needed(target: float, a: float = 0.86, b: float = 1.1, c: float = 0.4) -> float:
    return float((b / (a - target)) ** (1 / c))


def total(plan: Plan) -> float:
    """Rankings in all at the estimate; inf for none (a goal never reached sorts last)."""
    return math.inf if plan.estimate is None else plan.now + plan.estimate


# Accuracy curve


def test_exact_points_of_a_known_curve_give_the_rankings_it_needs() -> None:
    plan = accuracy_plan(RANKINGS, law(RANKINGS).tolist(), [1e5] * 4, target=0.82)
    assert plan.reason is None
    assert plan.now == 2000
    assert total(plan) == pytest.approx(needed(0.82), rel=0.05)  # about 3,970
    assert plan.exponent == pytest.approx(0.4, abs=0.03)
    assert plan.plateau == pytest.approx(0.86, abs=0.005)
    assert plan.basis == (250, 500, 1000, 2000)


def test_noisy_points_recover_the_rankings_needed_within_a_factor_of_one_and_a_half() -> None:
    """10,000 held-out items a point (a standard error of 0.004); the 80 % range holds the
    truth about as often as it says."""
    truth = needed(0.82)
    estimates, held = [], 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        measured = rng.binomial(10_000, law(RANKINGS)) / 10_000
        plan = accuracy_plan(RANKINGS, measured.tolist(), [10_000] * 4, target=0.82)
        assert plan.estimate is not None, plan.reason
        estimates.append(total(plan))
        assert plan.low is not None
        held += (
            plan.low + plan.now
            <= truth
            <= (math.inf if plan.high is None else plan.high + plan.now)
        )
    assert truth / 1.5 <= float(np.median(estimates)) <= truth * 1.5
    assert held >= 6


def test_without_a_target_the_plan_aims_just_below_the_plateau() -> None:
    plan = accuracy_plan(RANKINGS, law(RANKINGS).tolist(), [1e5] * 4)
    assert plan.target == pytest.approx(0.86 - DEFAULT_MARGIN, abs=0.005)
    assert total(plan) == pytest.approx(needed(0.86 - DEFAULT_MARGIN), rel=0.15)


def test_two_reward_models_fit_the_curve_with_the_prior_exponent() -> None:
    points = [500, 1000]
    plan = accuracy_plan(points, law(points, c=0.5).tolist(), [1e5] * 2, target=0.84)
    assert plan.exponent == PRIOR_EXPONENT
    assert total(plan) == pytest.approx(needed(0.84, c=0.5), rel=0.01)  # 3,025


def test_one_reward_model_asks_for_more() -> None:
    plan = accuracy_plan([800], [0.71], [300])
    assert plan.estimate is None
    assert plan.reason is not None
    assert "More reward models are needed" in plan.reason


def test_a_target_above_the_plateau_is_unreachable() -> None:
    plan = accuracy_plan(RANKINGS, law(RANKINGS).tolist(), [1e5] * 4, target=0.9)
    assert plan.estimate is None
    assert plan.reason is not None
    assert "above what the curve levels off at" in plan.reason


def test_a_target_already_reached_needs_no_more_rankings() -> None:
    plan = accuracy_plan(RANKINGS, law(RANKINGS).tolist(), [1e5] * 4, target=0.75, now=2400)
    assert (plan.estimate, plan.low) == (0, 0)


def test_an_accuracy_that_falls_with_more_rankings_gives_no_estimate() -> None:
    plan = accuracy_plan([300, 600, 1200], [0.8, 0.75, 0.7], [2000] * 3, target=0.85)
    assert plan.estimate is None
    assert plan.reason is not None
    assert "did not rise" in plan.reason


def test_mismatched_or_out_of_range_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        accuracy_plan([1, 2], [0.5], [10, 10])
    with pytest.raises(ValueError, match="target"):
        accuracy_plan([1, 2], [0.5, 0.6], [10, 10], target=1.5)


curves = st.tuples(
    st.floats(0.7, 0.97),  # a
    st.floats(0.2, 3.0),  # b
    st.floats(0.15, 1.2),  # c
    st.sampled_from([100, 300, 1000, 5000]),  # held-out items a point
    st.integers(0, 2**31 - 1),  # noise seed
    st.integers(2, 5),  # reward models
)


def _measured(a: float, b: float, c: float, items: int, seed: int, k: int) -> list[float]:
    points = [200 * 2**i for i in range(k)]
    rng = np.random.default_rng(seed)
    p = np.clip(law(points, a, b, c), 0.0, 1.0)
    return (rng.binomial(items, p) / items).tolist()


@settings(max_examples=40, deadline=None)
@given(curve=curves, targets=st.tuples(st.floats(0.55, 0.99), st.floats(0.55, 0.99)))
def test_a_higher_target_needs_at_least_as_many_rankings(
    curve: tuple[float, float, float, int, int, int], targets: tuple[float, float]
) -> None:
    a, b, c, items, seed, k = curve
    measured = _measured(a, b, c, items, seed, k)
    points = [200 * 2**i for i in range(k)]
    lower, higher = sorted(targets)
    plans = [
        accuracy_plan(points, measured, [items] * k, target=t, bootstrap=20)
        for t in (lower, higher)
    ]
    assert total(plans[0]) <= total(plans[1])


@settings(max_examples=40, deadline=None)
@given(curve=curves, target=st.none() | st.floats(0.55, 0.99))
def test_the_range_holds_the_estimate(
    curve: tuple[float, float, float, int, int, int], target: float | None
) -> None:
    a, b, c, items, seed, k = curve
    points = [200 * 2**i for i in range(k)]
    plan = accuracy_plan(points, _measured(a, b, c, items, seed, k), [items] * k, target=target)
    if plan.estimate is None:
        assert plan.reason
        return
    assert plan.low is not None
    assert plan.low <= plan.estimate
    assert plan.high is None or plan.estimate <= plan.high


# Verdict curve


def test_the_verdict_plan_finds_where_a_shrinking_interval_clears_zero() -> None:
    """Difference 20 points, width 400/√n: the interval 20 ± 200/√n clears 0 at n = 100."""
    prefixes = [10, 20, 30, 40]
    widths = [400 / math.sqrt(n) for n in prefixes]
    half = widths[-1] / 2
    plan = verdict_plan(prefixes, widths, 20.0, 20.0 - half, 20.0 + half)
    assert plan.reason is None
    assert total(plan) == pytest.approx(100, abs=1)
    assert plan.exponent == pytest.approx(0.5)
    assert plan.estimate == 60
    assert plan.low is not None
    assert plan.low <= 60
    assert plan.high is None or plan.high >= 60


def test_a_negative_difference_plans_on_the_upper_side() -> None:
    plan = verdict_plan([40], [100.0], -10.0, -60.0, 40.0)
    assert total(plan) == pytest.approx(40 * (50 / 10) ** 2, abs=1)  # high − d = 50


@settings(max_examples=50, deadline=None)
@given(
    low=st.floats(0.01, 500),
    spread=st.floats(0.0, 500),
    at=st.floats(0.0, 1.0),
    now=st.integers(1, 100_000),
    negative=st.booleans(),
)
def test_an_interval_that_already_excludes_zero_needs_no_more_rankings(
    low: float, spread: float, at: float, now: int, negative: bool
) -> None:
    high = low + spread
    difference = low + at * spread
    if negative:
        low, difference, high = -high, -difference, -low
    plan = verdict_plan([now], [high - low], difference, low, high)
    assert (plan.estimate, plan.low, plan.high) == (0, 0, 0)


def test_equal_ratings_give_no_verdict_estimate() -> None:
    plan = verdict_plan([100], [60.0], 0.0, -30.0, 30.0)
    assert plan.estimate is None
    assert plan.reason


def test_a_difference_a_rounding_error_outside_a_clear_interval_is_decided() -> None:
    """Every bootstrap round gave the same difference; the point fit differs in the last bits."""
    plan = verdict_plan([30], [0.0], -905.202440301764, -905.2024403017667, -905.2024403017667)
    assert (plan.estimate, plan.low, plan.high) == (0, 0, 0)


@pytest.mark.parametrize("exponent", [0.3, 0.5, 0.8])
def test_the_width_exponent_is_recovered_from_the_prefixes(exponent: float) -> None:
    prefixes = [25, 50, 75, 100]
    assert width_exponent(prefixes, [300 * n**-exponent for n in prefixes]) == pytest.approx(
        exponent
    )
    assert width_exponent(prefixes[:2], [1.0, 0.7]) is None


def test_rankings_for_accuracy_counts_totals_from_no_rankings() -> None:
    plan = rankings_for_accuracy(RANKINGS, law(RANKINGS).tolist(), [1e5] * 4, target=0.82)
    assert plan.now == 0
    assert plan.estimate == pytest.approx(needed(0.82), rel=0.05)


def test_an_interval_that_touches_zero_needs_at_least_one_more_ranking() -> None:
    """A bootstrap bound of exactly 0 is no verdict (bradley_terry.verdict needs low > 0)."""
    plan = verdict_plan([24], [120.0], 58.0, 0.0, 120.0)
    assert plan.estimate is not None
    assert plan.estimate >= 1


@settings(max_examples=50, deadline=None)
@given(
    difference=st.floats(-300, 300).filter(lambda d: abs(d) > 1e-6),
    below=st.floats(0.0, 400),
    above=st.floats(0.0, 400),
    now=st.integers(1, 50_000),
)
def test_the_verdict_range_holds_the_estimate(
    difference: float, below: float, above: float, now: int
) -> None:
    plan = verdict_plan([now], [below + above], difference, difference - below, difference + above)
    if plan.estimate is None:
        assert plan.reason
        return
    assert plan.low is not None
    assert plan.low <= plan.estimate
    assert plan.high is None or plan.estimate <= plan.high
