"""The promotion gate as a pure function of the measured numbers and the round's settings.

The evaluating stage measures (samples, KL, held-out scores), turns the measurements into the
gate's figures with the pure functions here and calls `decide`; tests call them on plain
numbers. A candidate is promoted only on what was measured: the lower end of the
gain's interval must be above the bound (an interval of [0, 0] is no evidence of a gain), and
samples identical to the previous version's mean nothing was measured at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

LABELS: dict[str, str] = {
    "passed": "decision",
    "version": "registered as policy version",
    "kl": "KL to the reference (nats per answer)",
    "max_kl": "KL bound (nats per answer)",
    "kl_per_token": "KL per token (nats)",
    "new_score": "held-out score, new version (reward std units)",
    "previous_score": "held-out score, previous version (reward std units)",
    "score_gain": "gain (held-out reward model, reward std units)",
    "score_gain_low": "gain interval, low end (reward std units)",
    "score_gain_high": "gain interval, high end (reward std units)",
    "min_score_gain": "gain bound (reward std units; the interval's low end must be above it)",
    "confidence": "interval level (two-sided, 0–1)",
    "training_rm_gain": "gain by the reward model PPO trained on (reward std units)",
    "length_correlation": "score-length correlation, new version (Pearson r, −1 to 1)",
    "identical_samples": "share of samples identical to the previous version's (0–1)",
    "heldout_accuracy": "DPO held-out pair accuracy (share of pairs, 0–1)",
    "min_heldout_accuracy": "DPO accuracy bound (share of pairs, 0–1)",
    "gate_samples": "samples per held-out prompt",
    "scorer": "scored by",
    "prompts_turns_dropped": "held-out prompts that lost their oldest turns to fit the model",
    "prompts_truncated": "held-out prompts left-truncated to fit the model",
}


def repeat_prompts(prompts: Sequence[T], samples_per_prompt: int) -> list[T]:
    """n samples of each held-out prompt, prompt by prompt: [p0, p0, .., p1, p1, ..]."""
    return [prompt for prompt in prompts for _ in range(samples_per_prompt)]


def sample_figures(
    *,
    kl: float,
    new_texts: Sequence[str],
    old_texts: Sequence[str],
    new_lengths: Sequence[int],
    max_kl: float,
    samples_per_prompt: int,
) -> dict[str, Any]:
    """The gate's figures from the two versions' samples of the same prompts and seed: the new
    version's KL to the reference (per answer, and per token of its `new_lengths`), and the
    share of its samples identical to the previous version's (1 when there are none)."""
    tokens = statistics.fmean(new_lengths) if new_lengths else 0.0
    identical = (
        statistics.fmean(a == b for a, b in zip(new_texts, old_texts, strict=True))
        if new_texts
        else 1.0
    )
    return {
        "kl": kl,
        "kl_per_token": kl / tokens if tokens else None,
        "max_kl": max_kl,
        "gate_samples": samples_per_prompt,
        "identical_samples": identical,
    }


def decide(gate: dict[str, Any], config: dict[str, Any]) -> tuple[bool, list[str]]:
    """(passed, reasons it failed) from the gate's figures and the round's config."""
    reasons: list[str] = []
    kl, max_kl = gate.get("kl"), config["max_kl"]
    if kl is None or kl > max_kl:
        reasons.append(f"KL to the reference {_num(kl)} is above its bound {max_kl}")
    if gate.get("identical_samples", 0.0) >= 1.0:
        reasons.append(
            "every sample of the new version is identical to the previous version's: the "
            "gate measured no difference"
        )
    if "score_gain" in gate:
        low, bound = gate["score_gain_low"], config.get("min_score_gain", 0.0)
        if not low > bound:
            reasons.append(
                f"held-out score gain {gate['score_gain']:+.3f}, interval "
                f"[{low:+.3f}, {gate['score_gain_high']:+.3f}] at "
                f"{gate.get('confidence', 0.95):.0%}: its low end is not above {bound}"
            )
    if gate.get("min_heldout_accuracy", 0) > 0:
        accuracy = gate.get("heldout_accuracy")
        if accuracy is None:
            reasons.append(
                "no held-out pairs to measure accuracy on (the pairs come from too few prompts)"
            )
        elif accuracy < gate["min_heldout_accuracy"]:
            reasons.append(
                f"held-out pair accuracy {accuracy:.3f} is below {gate['min_heldout_accuracy']}"
            )
    return not reasons, reasons


def _num(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"
