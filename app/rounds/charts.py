"""Server-drawn SVG line charts (no chart library, no CDN): a polyline per series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT, PAD = 420, 160, 28


@dataclass(frozen=True)
class Chart:
    title: str
    points: str  # SVG polyline "x,y x,y ..."
    y_min: float
    y_max: float
    x_max: float
    last: float | None
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def line_chart(title: str, rows: list[dict[str, Any]], x: str, y: str) -> Chart | None:
    data = [
        (float(r[x]), float(r[y]))
        for r in rows
        if isinstance(r.get(x), int | float) and isinstance(r.get(y), int | float)
    ]
    if not data:
        return None
    xs, ys = [p[0] for p in data], [p[1] for p in data]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    x_span = (x_hi - x_lo) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    points = " ".join(
        f"{PAD + (px - x_lo) / x_span * inner_w:.1f},"
        f"{HEIGHT - PAD - (py - y_lo) / (y_hi - y_lo) * inner_h:.1f}"
        for px, py in data
    )
    return Chart(title, points, round(y_lo, 4), round(y_hi, 4), x_hi, ys[-1])


def round_charts(metrics: dict[str, Any]) -> list[Chart]:
    """Reward model accuracy per epoch; PPO score and KL per step (or the DPO/SFT losses)."""
    specs = [
        ("Reward model: held-out accuracy per epoch", "reward_model", "epoch", "heldout_accuracy"),
        ("Reward model: loss per epoch", "reward_model", "epoch", "loss"),
        ("Policy: RM score per step", "policy", "step", "score"),
        ("Policy: KL to the reference per step", "policy", "step", "kl"),
        ("Policy: loss per step", "policy", "step", "loss"),
    ]
    charts = []
    for title, series, x, y in specs:
        chart = line_chart(title, list(metrics.get(series) or []), x, y)
        if chart is not None:
            charts.append(chart)
    return charts
