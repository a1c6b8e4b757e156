"""Defaults sized from the project: what a round left blank becomes, and why.

A round started with no settings must still be a good round, on a project of 30 prompts or of
30,000. The rules below read the project (its sampling settings, how many prompts and
rankings it has) and the round's id; the admin sees the resulting values and reasons on the
round form before starting, and the round keeps them in its metrics under "sizing".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.models import Project

GATE_SAMPLES_PER_VERSION = 200
"""Samples of each version the gate scores: with rewards of unit spread, the interval of a
paired mean gain over ~50-200 prompts is then about ±0.15, narrow enough to resolve a real
gain of 0.3 standard deviations."""
PPO_PASSES = 4
"""PPO rollouts per training prompt per round. bench/loop.py --suite (one seed of the length
and keywords+length families, 3 rounds): 4 passes gained +0.61 and +0.76 σ over the base
with KL 3-6 nats; 8 passes gained +0.64 and +0.45 σ with KL 3-10 and twice the policy time.
No difference the noise of one seed resolves, so the cheaper one; the reward model's
accuracy (0.54-0.62 against label ceilings of 0.61-0.67) limits what a round can gain."""
PPO_MIN_EPISODES, PPO_MAX_EPISODES = 256, 2048


@dataclass(frozen=True)
class Sized:
    value: Any
    reason: str


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
    ppo = config.get("ppo")
    if round_type == "reward_ppo" and isinstance(ppo, dict):
        if ppo.get("temperature") is None:
            sized["ppo.temperature"] = Sized(
                project.temperature, "the project's sampling temperature"
            )
        if ppo.get("max_new_tokens") is None:
            sized["ppo.max_new_tokens"] = Sized(
                project.max_new_tokens,
                "the project's sample length, so rollouts are as long as what annotators rank",
            )
        if ppo.get("steps") is None:
            train_prompts = max(1, prompts - n_eval)
            basis = min(train_prompts, max(rankings, 1))
            episodes = min(PPO_MAX_EPISODES, max(PPO_MIN_EPISODES, PPO_PASSES * basis))
            steps = max(1, round(episodes / ppo["batch_size"]))
            sized["ppo.steps"] = Sized(
                steps,
                f"{PPO_PASSES} rollouts per training prompt ({train_prompts}), or per ranking "
                f"while rankings ({rankings}) are fewer, within {PPO_MIN_EPISODES}-"
                f"{PPO_MAX_EPISODES} episodes: {steps} steps × {ppo['batch_size']}",
            )
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
