"""The round page's charts as data: axes, ranges and points the SVG is drawn from."""

from __future__ import annotations

from typing import Any

import pytest

from app.rounds.charts import MAX_POINTS, Chart, nice_axis, round_charts, tick_label
from app.templating import format_eta


def _by_key(metrics: dict[str, Any]) -> dict[str, Chart]:
    return {c.key: c for c in round_charts(metrics)}


def test_one_epoch_is_one_visible_point_on_a_0_to_1_accuracy_axis() -> None:
    charts = _by_key(
        {"reward_model": [{"step": 1, "epoch": 1.0, "loss": 0.69, "heldout_accuracy": 0.625}]}
    )

    accuracy = charts["reward-model-accuracy"]
    assert (accuracy.y_min, accuracy.y_max) == (0.0, 1.0)
    assert [t.label for t in accuracy.y_ticks] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert [t.label for t in accuracy.x_ticks] == ["0", "1"]
    assert accuracy.x_label == "epoch"
    assert "0–1" in accuracy.y_label
    (point,) = accuracy.markers
    assert point.tip == "epoch 1: 0.625"
    assert accuracy.marker_radius >= 3
    assert accuracy.left < point.cx < accuracy.right
    assert accuracy.top < point.cy < accuracy.bottom
    assert accuracy.line == ""  # nothing to join; the dot is the chart
    loss = charts["reward-model-loss"]
    assert loss.y_min == 0.0  # a loss axis starts at zero
    assert loss.y_max >= 0.69
    assert "nats" in loss.y_label


def test_points_sit_where_the_ticks_say() -> None:
    rows = [{"epoch": e, "heldout_accuracy": a} for e, a in [(1, 0.5), (2, 0.75), (3, 1.0)]]
    chart = _by_key({"reward_model": rows})["reward-model-accuracy"]
    ticks = {t.label: t.at for t in chart.y_ticks}
    x_ticks = {t.label: t.at for t in chart.x_ticks}
    first, second, last = chart.markers
    assert first.cy == pytest.approx((ticks["0.4"] + ticks["0.6"]) / 2)
    assert last.cy == pytest.approx(ticks["1.0"])
    assert [m.cx for m in chart.markers] == [x_ticks["1"], x_ticks["2"], x_ticks["3"]]
    assert chart.line.count(",") == 3


def test_a_series_without_finite_values_draws_no_chart() -> None:
    metrics = {"reward_model": [{"epoch": 1, "heldout_accuracy": None, "loss": 0.7}]}
    assert set(_by_key(metrics)) == {"reward-model-loss"}
    assert round_charts({}) == []


def test_a_long_series_is_thinned_but_keeps_its_last_point() -> None:
    rows = [{"step": i, "score": i / 10, "kl": 0.01 * i} for i in range(1, 1002)]
    chart = _by_key({"policy": rows})["policy-score"]
    assert len(chart.markers) <= MAX_POINTS + 1
    assert chart.markers[-1].tip == "step 1001: 100.1"
    assert chart.last == 100.1
    assert chart.x_max >= 1001


def test_a_negative_score_gets_an_axis_below_zero() -> None:
    chart = _by_key({"policy": [{"step": 1, "score": -0.4}]})["policy-score"]
    assert chart.y_min < -0.4 < chart.y_max
    assert all("−" in t.label for t in chart.y_ticks if t.label.startswith("−"))


@pytest.mark.parametrize(
    ("lo", "hi", "integer", "ticks"),
    [
        (0, 1, False, [0, 0.2, 0.4, 0.6, 0.8, 1]),
        (0, 0.0034, False, [0, 0.001, 0.002, 0.003, 0.004]),
        (0, 1, True, [0, 1]),
        (0, 3, True, [0, 1, 2, 3]),
        (0, 120, True, [0, 25, 50, 75, 100, 125]),
        (-0.37, 1.2, False, [-0.5, 0, 0.5, 1, 1.5]),
    ],
)
def test_axes_are_widened_to_round_ticks(
    lo: float, hi: float, integer: bool, ticks: list[float]
) -> None:
    low, high, values = nice_axis(lo, hi, integer=integer)
    assert values == pytest.approx(ticks)
    assert (low, high) == (values[0], values[-1])


def test_tick_labels_use_the_decimals_of_the_step() -> None:
    assert [tick_label(v, 0.25) for v in (0, 0.25, 1)] == ["0.00", "0.25", "1.00"]
    assert tick_label(100, 50) == "100"
    assert tick_label(-1.5, 0.5) == "−1.5"
    assert tick_label(-0.0, 0.5) == "0.0"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "under a minute"),
        (59.4, "under a minute"),
        (61, "about 1 min"),
        (185, "about 3 min"),
        (3569, "about 59 min"),
        (3590, "about 1 h"),
        (4810, "about 1 h 20 min"),
        (3 * 3600 + 5 * 60, "about 3 h 5 min"),
    ],
)
def test_time_left_reads_as_people_say_it(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text
