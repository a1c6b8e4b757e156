"""Defaults sized from the project: what a round left blank becomes, and why.

A round started with no settings must still be a good round, on a project of 30 prompts or of
30,000. The rules below read the project (its sampling settings, how many prompts and
rankings it has) and the round's id; the admin sees the resulting values and reasons on the
round form before starting, and the round keeps them in its metrics under "sizing".
"""

from __future__ import annotations

import math
from typing import Any

from app.models import Project
from app.rounds import registry
from app.rounds.round_type import Sized

__all__ = ["Sized", "apply_sizing", "eval_prompt_count", "size_round"]

GATE_SAMPLES_PER_VERSION = 200
"""Samples of each version the gate scores: with rewards of unit spread, the interval of a
paired mean gain over ~50-200 prompts is then about ±0.15, narrow enough to resolve a real
gain of 0.3 standard deviations."""


def eval_prompt_count(prompts: int) -> int:
    """Held-out prompts for the gate: a quarter of the project's, at most 200
    (`lineage.split_prompts` never holds out more than a quarter)."""
    return max(2, min(200, prompts // 4))


def size_round(
    project: Project, *, round_type: str, config: dict[str, Any], prompts: int, rankings: int
) -> dict[str, Sized]:
    """Values for the blank (None) settings of `config` (a parsed round config), by dotted name.

    The seed is left out: it needs the round's id (`app.seeds.derived_seed("round", id)`).
    """
    sized: dict[str, Sized] = {}
    n_eval = eval_prompt_count(prompts)
    if config.get("eval_prompts") is None:
        sized["eval_prompts"] = Sized(
            n_eval, f"a quarter of the project's {prompts} active prompts (at most 200)"
        )
    n_eval = config.get("eval_prompts") or n_eval
    if config.get("gate_samples") is None:
        per_prompt = max(2, min(32, math.ceil(GATE_SAMPLES_PER_VERSION / max(n_eval, 1))))
        sized["gate_samples"] = Sized(
            per_prompt,
            f"about {GATE_SAMPLES_PER_VERSION} samples per version over {n_eval} held-out "
            "prompts, so the gain's interval can resolve a real gain",
        )
    spec = registry.find(round_type)
    if spec is not None and spec.size is not None:  # what only this type has
        sized.update(spec.size(project, config, prompts=prompts, rankings=rankings, n_eval=n_eval))
    return sized


def apply_sizing(config: dict[str, Any], sized: dict[str, Sized]) -> dict[str, Any]:
    """`config` with the sized values filled in (nested by the dotted names)."""
    filled = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for name, item in sized.items():
        target = filled
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = item.value
    return filled
