"""Distributed entries of the policy stages (PPO, RLOO, GRPO): what each rank runs.

The payload holds what the in-process policy stage hands its trainer (the base and the
adapters merged into it, the training prompts, the trainer's config as a dict, the round's
reward model and whether it shares the policy's base, where training starts and saves).
Every rank loads the base itself; the trainer's `ctx` shards rollouts and sums gradients
(worker/training/shards.py), or with `fsdp` shards the base itself over the ranks (FSDP2);
rank 0 saves the adapter and returns the run's final figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from worker.distributed.context import DistContext
from worker.distributed.entry import entry, progress, read_payload

ALGORITHMS = ("ppo", "rloo", "grpo")


def policy_payload(
    algorithm: str,
    *,
    base_model: str,
    merged_adapter_uris: tuple[str, ...],
    trust_remote_code: bool,
    prompts: list[Any],
    config: Any,
    reward_dir: Path,
    reward_on_policy_base: bool,
    init_adapter_dir: Path | None,
    out_dir: Path,
    fsdp: bool = False,
) -> dict[str, Any]:
    """The payload of the `algorithm` entry from the in-process trainer's inputs."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"no distributed policy entry {algorithm!r}; known: {ALGORITHMS}")
    return {
        "algorithm": algorithm,
        "base_model": base_model,
        "merged_adapter_uris": list(merged_adapter_uris),
        "trust_remote_code": trust_remote_code,
        "prompts": prompts,
        "config": {**asdict(config), "device": None},
        "reward_dir": str(reward_dir),
        "reward_on_policy_base": reward_on_policy_base,
        "init_adapter_dir": None if init_adapter_dir is None else str(init_adapter_dir),
        "out_dir": str(out_dir),
        "fsdp": fsdp,
    }


@entry("ppo")
def ppo(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    return _train(ctx, payload_dir, "ppo")


@entry("rloo")
def rloo(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    return _train(ctx, payload_dir, "rloo")


@entry("grpo")
def grpo(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    return _train(ctx, payload_dir, "grpo")


def _train(ctx: DistContext, payload_dir: Path, algorithm: str) -> dict[str, Any]:
    """Load the base on this rank, train on its shards; rank 0: {"final": figures}."""
    from worker.jobs.rounds import load_reward_model_dir, scorer
    from worker.policies import load_base
    from worker.training.grpo import GRPOConfig, train_grpo
    from worker.training.ppo import PPOConfig, SharedBaseReward, train_ppo
    from worker.training.rloo import RLOOConfig, train_rloo

    payload = read_payload(payload_dir)
    if payload["algorithm"] != algorithm:
        raise ValueError(f"payload is for {payload['algorithm']!r}, entry is {algorithm!r}")
    trainers: dict[str, tuple[Callable[..., Any], type]] = {
        "ppo": (train_ppo, PPOConfig),
        "rloo": (train_rloo, RLOOConfig),
        "grpo": (train_grpo, GRPOConfig),
    }
    train, config_cls = trainers[algorithm]
    model, tokenizer = load_base(
        payload["base_model"],
        tuple(payload["merged_adapter_uris"]),
        trust_remote_code=bool(payload["trust_remote_code"]),
    )
    reward_dir = Path(payload["reward_dir"])
    reward = (
        SharedBaseReward(reward_dir)
        if payload["reward_on_policy_base"]
        else scorer(*load_reward_model_dir(reward_dir))
    )
    init = payload["init_adapter_dir"]
    result = train(
        model,
        tokenizer,
        payload["prompts"],
        reward,
        config_cls(**payload["config"]),
        init_adapter_dir=None if init is None else Path(init),
        out_dir=Path(payload["out_dir"]),
        progress=lambda step, total, metrics: progress(
            ctx, payload_dir, step=step, total=total, metrics=metrics
        ),
        ctx=ctx,
        fsdp=bool(payload.get("fsdp", False)),
    )
    return {"final": result.final} if ctx.is_main else {}
