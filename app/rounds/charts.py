"""Server-drawn SVG charts of a round's series (no chart library, no script).

Each chart has real axes: ticks with labels on both, axis titles with units, a range the
quantity calls for (accuracy 0–1; losses and KL from 0) and a dot per point with its value as a
tooltip, so a reward model trained for one epoch shows one visible point, not an empty box.
`templates/round.html` draws the SVG from the `Chart` built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 460, 240
# Margins around the plot box: y tick labels on the left, the y axis title above the box,
# x tick labels and the x axis title below it.
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 28, 44
INSET = 8  # data never sits on the frame: the first and last values are this far inside
MAX_POINTS = 200  # a longer series is thinned (the last point always kept) to keep polls light
SMALL_SERIES = 50  # up to this many points get full-size dots


@dataclass(frozen=True)
class Tick:
    at: float  # pixel position along the axis
    label: str


@dataclass(frozen=True)
class Marker:
    cx: float
    cy: float
    tip: str  # the point's value, shown as the dot's <title> tooltip


@dataclass(frozen=True)
class Spec:
    """One chart: a y metric against an x metric of a series in the round's metrics."""

    key: str
    title: str
    series: str
    x: str
    y: str
    x_label: str
    y_label: str
    fixed: tuple[float, float] | None = None  # the quantity's own range (accuracy: 0–1)
    from_zero: bool = False  # losses and KL: the axis starts at 0 (or below, if data is)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    x_label: str
    y_label: str
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    markers: tuple[Marker, ...]
    line: str  # SVG polyline points; empty for a single point
    marker_radius: float
    y_min: float
    y_max: float
    x_min: float
    x_max: float
    last: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


SPECS: tuple[Spec, ...] = (
    Spec(
        "reward-model-accuracy",
        "Reward model: held-out accuracy per epoch",
        "reward_model",
        "epoch",
        "heldout_accuracy",
        "epoch",
        "held-out pair accuracy (share of pairs, 0–1)",
        fixed=(0.0, 1.0),
    ),
    Spec(
        "reward-model-loss",
        "Reward model: training loss per epoch",
        "reward_model",
        "epoch",
        "loss",
        "epoch",
        "training loss (nats per pair)",
        from_zero=True,
    ),
    Spec(
        "policy-score",
        "Policy: reward model score per step",
        "policy",
        "step",
        "score",
        "step",
        "mean score (reward std units)",
    ),
    Spec(
        "policy-kl",
        "Policy: KL to the reference per step",
        "policy",
        "step",
        "kl",
        "step",
        "KL to the reference (nats per answer)",
        from_zero=True,
    ),
    Spec(
        "policy-loss",
        "Policy: training loss per step",
        "policy",
        "step",
        "loss",
        "step",
        "training loss (nats)",
        from_zero=True,
    ),
)


def round_charts(metrics: dict[str, Any]) -> list[Chart]:
    """Reward model accuracy and loss per epoch; PPO score and KL per step (or the DPO/SFT
    loss): one chart per spec whose series has at least one point."""
    charts = []
    for spec in SPECS:
        chart = line_chart(spec, list(metrics.get(spec.series) or []))
        if chart is not None:
            charts.append(chart)
    return charts


def line_chart(spec: Spec, rows: list[dict[str, Any]]) -> Chart | None:
    data = [
        (float(r[spec.x]), float(r[spec.y]))
        for r in rows
        if _finite(r.get(spec.x)) and _finite(r.get(spec.y))
    ]
    if not data:
        return None
    if len(data) > MAX_POINTS:
        stride = math.ceil(len(data) / MAX_POINTS)
        data = data[::stride] if (len(data) - 1) % stride == 0 else [*data[::stride], data[-1]]
    xs, ys = [p[0] for p in data], [p[1] for p in data]
    integer_x = all(x == int(x) for x in xs)
    x_lo, x_hi, x_values = nice_axis(min(0.0, min(xs)), max(xs), integer=integer_x)
    y_lo, y_hi, y_values = nice_axis(*_y_range(spec, ys))

    x0, x1 = LEFT + INSET, WIDTH - RIGHT - INSET
    y0, y1 = HEIGHT - BOTTOM - INSET, TOP + INSET  # y grows downwards in SVG

    def px(x: float) -> float:
        return round(x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0), 1)

    def py(y: float) -> float:
        return round(y0 + (y - y_lo) / (y_hi - y_lo) * (y1 - y0), 1)

    x_step, y_step = _step(x_values), _step(y_values)
    markers = tuple(
        Marker(px(x), py(y), f"{spec.x_label} {_plain(x)}: {_value(y)}") for x, y in data
    )
    return Chart(
        key=spec.key,
        title=spec.title,
        x_label=spec.x_label,
        y_label=spec.y_label,
        x_ticks=tuple(Tick(px(v), tick_label(v, x_step)) for v in x_values),
        y_ticks=tuple(Tick(py(v), tick_label(v, y_step)) for v in y_values),
        markers=markers,
        line=" ".join(f"{m.cx},{m.cy}" for m in markers) if len(markers) > 1 else "",
        marker_radius=4.0 if len(markers) <= SMALL_SERIES else 2.0,
        y_min=y_lo,
        y_max=y_hi,
        x_min=x_lo,
        x_max=x_hi,
        last=ys[-1],
    )


def nice_axis(
    lo: float, hi: float, *, integer: bool = False, count: int = 5
) -> tuple[float, float, list[float]]:
    """(low, high, tick values): the range widened to round steps of 1, 2, 2.5 or 5 × 10^k
    (whole steps on an integer axis), about `count` intervals."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    multiples = (1.0, 2.0, 2.5, 5.0, 10.0)
    step = next(
        (
            m * magnitude
            for m in multiples
            if m * magnitude >= raw * (1 - 1e-9) and not (integer and m * magnitude % 1)
        ),
        1.0,
    )
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    values = [_clean(i * step) for i in range(first, last + 1)]
    return values[0], values[-1], values


def tick_label(value: float, step: float) -> str:
    """A tick's value with as many decimals as its step needs (0.25 steps: two)."""
    decimals = 0
    while decimals < 10 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{abs(value):.{decimals}f}"
    return text if value >= 0 or float(text) == 0 else "−" + text


def _y_range(spec: Spec, ys: list[float]) -> tuple[float, float]:
    lo, hi = min(ys), max(ys)
    if spec.fixed is not None:
        return min(spec.fixed[0], lo), max(spec.fixed[1], hi)
    if spec.from_zero:
        lo, hi = min(0.0, lo), max(0.0, hi)
        return (lo, hi) if hi > lo else (lo, lo + 1.0)
    if hi == lo:  # one value (or a flat series): a band around it
        pad = max(abs(lo) * 0.1, 0.1)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _step(values: list[float]) -> float:
    return values[1] - values[0] if len(values) > 1 else 1.0


def _clean(value: float) -> float:
    """Drop float noise from a multiple of a step (0.30000000000000004 → 0.3)."""
    return float(f"{value:.12g}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _value(value: float) -> str:
    return f"{value:.4g}"
