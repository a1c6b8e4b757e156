"""Distributed entries of the reward-model, SFT and DPO stages: what each rank runs.

The payload holds what the in-process path passes the trainer (rankings, reference samples,
config as a dict, base model, output directory), so both paths train on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from worker.distributed.context import DistContext
from worker.distributed.entry import entry, progress, read_payload

SUMMARY_FIELDS = (
    "heldout_weighted_accuracy",
    "n_train_weight_zero",
    "best_epoch",
    "lr",
    "lr_trials",
    "heldout_ranking_counts",
    "epochs",
    "n_train",
    "n_heldout",
    "train_forward_passes",
    "prompts_turns_dropped",
    "prompts_truncated",
)
"""The figures a reward-model run records on its run as they are (its metrics)."""
RESULT_FIELDS = (
    "heldout_accuracy",
    "heldout_accuracy_interval",
    *SUMMARY_FIELDS,
    "reward_mean",
    "reward_std",
    "steps",
    "train_seconds",
)
"""What a reward-model run reports back to the stage (RewardModelResult's figures)."""


def reward_model_payload(
    base: str,
    examples: list[Any],
    config: Any,
    *,
    out_dir: Path,
    reference: tuple[Any, Any] | None,
    fsdp: bool,
    ensemble: bool,
) -> dict[str, Any]:
    """The payload of `reward_model` from the in-process trainer's arguments."""
    return {
        "base": str(base),
        "examples": [asdict(e) for e in examples],
        "config": {**asdict(config), "device": None},
        "out_dir": str(out_dir),
        "reference": None if reference is None else [list(reference[0]), list(reference[1])],
        "fsdp": fsdp,
        "ensemble": ensemble,
    }


@entry("reward_model")
def reward_model(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    """Train the reward model on this rank's share of each batch; rank 0 saves it (and its
    uncertainty ensemble) to the payload's out_dir and returns its figures."""
    from worker.training.reward_ensemble import save_ensemble
    from worker.training.reward_model import (
        RankingExample,
        RewardModelConfig,
        load_reward_model,
        train_reward_model,
    )

    payload = read_payload(payload_dir)
    config = RewardModelConfig(**payload["config"])
    examples = [RankingExample(**e) for e in payload["examples"]]
    reference = payload["reference"]
    out_dir = Path(payload["out_dir"])
    result = train_reward_model(
        payload["base"],
        examples,
        config,
        out_dir=out_dir,
        reference=None if reference is None else (reference[0], reference[1]),
        progress=lambda step, total, metrics: progress(
            ctx, payload_dir, step=step, total=total, metrics=metrics
        ),
        ctx=ctx,
        fsdp=bool(payload["fsdp"]),
    )
    if not ctx.is_main:
        return {}
    if payload["ensemble"]:
        if payload["fsdp"]:  # the trained model is sharded: fit on the saved one, whole
            from dataclasses import replace

            result = replace(result, model=load_reward_model(out_dir, device="cpu"))
        save_ensemble(result, examples, out_dir, config=config)
    return {name: getattr(result, name) for name in RESULT_FIELDS}


def adapter_payload(
    algorithm: str,
    *,
    base_model: str,
    merged_adapter_uris: tuple[str, ...],
    trust_remote_code: bool,
    examples: list[Any],
    config: Any,
    init_adapter_dir: Path | None,
    out_dir: Path,
    fsdp: bool = False,
) -> dict[str, Any]:
    """The payload of the `sft` or `dpo` entry: what the policy stage hands its trainer (the
    base and the adapters merged into it, demonstrations or preference pairs, the config)."""
    return {
        "algorithm": algorithm,
        "base_model": base_model,
        "merged_adapter_uris": list(merged_adapter_uris),
        "trust_remote_code": trust_remote_code,
        "examples": [asdict(e) for e in examples],
        "config": {**asdict(config), "device": None},
        "init_adapter_dir": None if init_adapter_dir is None else str(init_adapter_dir),
        "out_dir": str(out_dir),
        "fsdp": fsdp,
    }


@entry("sft")
def sft(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    from worker.training.sft import Demonstration, SFTConfig, train_sft

    return _fit_adapter(ctx, payload_dir, "sft", train_sft, Demonstration, SFTConfig)


@entry("dpo")
def dpo(ctx: DistContext, payload_dir: Path) -> dict[str, Any]:
    from worker.training.dpo import DPOConfig, PreferencePair, train_dpo

    return _fit_adapter(ctx, payload_dir, "dpo", train_dpo, PreferencePair, DPOConfig)


def _fit_adapter(
    ctx: DistContext,
    payload_dir: Path,
    algorithm: str,
    train: Callable[..., Any],
    example: Callable[..., Any],
    config: Callable[..., Any],
) -> dict[str, Any]:
    """Load the base on this rank, train the adapter on its shards; rank 0 saves it and
    returns {"final": figures}."""
    from worker.policies import load_base

    payload = read_payload(payload_dir)
    if payload["algorithm"] != algorithm:
        raise ValueError(f"payload is for {payload['algorithm']!r}, entry is {algorithm!r}")
    model, tokenizer = load_base(
        payload["base_model"],
        tuple(payload["merged_adapter_uris"]),
        trust_remote_code=bool(payload["trust_remote_code"]),
    )
    init = payload["init_adapter_dir"]
    result = train(
        model,
        tokenizer,
        [example(**e) for e in payload["examples"]],
        config(**payload["config"]),
        out_dir=Path(payload["out_dir"]),
        init_adapter_dir=None if init is None else Path(init),
        progress=lambda step, total, metrics: progress(
            ctx, payload_dir, step=step, total=total, metrics=metrics
        ),
        ctx=ctx,
        fsdp=bool(payload["fsdp"]),
    )
    return {"final": result.final} if ctx.is_main else {}
