"""RLOO and GRPO beside PPO: seconds per update and peak memory on one shape (issue 24).

Every algorithm runs in bench/ppo.py's "shared" layout, as a round runs it: one base, the policy
a LoRA adapter, the reference the adapter switched off, the reward model (random adapter and
head, made once by `bench.ppo._save_reward_model`) a second adapter on the same base. PPO adds
its value head; RLOO and GRPO (worker/training/rloo.py, grpo.py) have none and sample K answers
per prompt instead. Each algorithm runs in a fresh process (`bench._process.run_in_process`),
so its peak RSS (/proc/self/status VmHWM) is its own; on CUDA the peak allocated GPU memory
is printed too. `--repeats` runs the sequence PPO, RLOO, GRPO that many times in turn, so a
load that changes on a shared machine falls on every algorithm alike; "CPU s/update" (the
process's CPU time over its training call, per update) follows the load less than wall time.

Rollouts per update are matched by default: PPO samples one answer to each of `--batch`
prompts; RLOO and GRPO sample `--group-size` answers to each of batch / K prompts (the stages'
defaults: 4 prompts x 4 = PPO's 16). `--critic-free-prompts 16` gives them 16 prompts (64
rollouts), 4x the sampling and optimisation work per update.

    .venv/bin/python -m bench.critic_free                     # random 12x768 GPT-2, 2 updates
    .venv/bin/python -m bench.critic_free --updates 1 --repeats 2
    .venv/bin/python -m bench.critic_free --critic-free-prompts 16 --updates 1
    .venv/bin/python -m bench.critic_free --model /tmp/tiny --device cuda
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process
from bench.ppo import _run as run_ppo
from bench.ppo import (
    _save_reward_model,
    _status_mb,
    bench_prompts,
    model_or_random_gpt2,
    weights_mb,
)

app = typer.Typer(add_completion=False)
console = Console(width=160)
ALGORITHMS = ("ppo", "rloo", "grpo")


def critic_free_trainer(algorithm: str) -> tuple[Any, Any]:
    """(config class, train function) of 'rloo' or 'grpo' (imported here: a child's work)."""
    if algorithm == "rloo":
        from worker.training.rloo import RLOOConfig, train_rloo

        return RLOOConfig, train_rloo
    from worker.training.grpo import GRPOConfig, train_grpo

    return GRPOConfig, train_grpo


def _run_critic_free(
    algorithm: str, model_dir: str, rm_dir: str, args: dict[str, Any]
) -> dict[str, Any]:
    """RLOO or GRPO on the shared base in a fresh process; the figures bench.ppo's _run gives."""
    import torch

    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.ppo import SharedBaseReward

    torch.set_num_threads(args["threads"])
    config_class, train = critic_free_trainer(algorithm)
    config = config_class(
        steps=args["steps"],
        batch_size=args["critic_free_prompts"],
        group_size=args["group_size"],
        mini_batch_size=args["mini_batch"],
        grad_accum=args["grad_accum"],
        epochs=args["ppo_epochs"],
        max_new_tokens=args["new_tokens"],
        seed=args["seed"],
        device=args["device"],
    )
    tokenizer = load_tokenizer(model_dir)
    base = load_causal_lm(model_dir, device=args["device"], dtype=args["dtype"])
    ensure_pad_token(tokenizer, base)
    n_base = sum(p.numel() for p in base.parameters())
    reward = SharedBaseReward(Path(rm_dir), batch_size=config.micro_batch_size)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as out_dir:
        result = train(base, tokenizer, bench_prompts(), reward, config, out_dir=Path(out_dir))
    cpu = time.process_time() - cpu
    return {
        "layout": algorithm,
        "base_params_m": n_base / 1e6,
        "trainable_m": sum(p.numel() for p in result.model.parameters() if p.requires_grad) / 1e6,
        "step_seconds": [m["time"] for m in result.metrics_per_step],
        "cpu_seconds": cpu / len(result.metrics_per_step),  # as bench.ppo's: CPU per update
        "weights_mb": weights_mb(result.model),
        "peak_rss_mb": _status_mb("VmHWM"),
        "peak_gpu_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        ),
    }


def _cpu(run: dict[str, Any]) -> str:
    """The process's CPU seconds per update: steadier than wall seconds on a loaded machine."""
    return f"{run['cpu_seconds']:.1f}" if "cpu_seconds" in run else "-"


def _one(algorithm: str, model_dir: str, rm_dir: str, args: dict[str, Any]) -> dict[str, Any]:
    if algorithm == "ppo":
        return run_in_process(run_ppo, "shared", model_dir, rm_dir, args)
    return run_in_process(_run_critic_free, algorithm, model_dir, rm_dir, args)


@app.command()
def main(
    model: str | None = typer.Option(None, help="Model dir; default: a random GPT-2 built here."),
    layers: int = typer.Option(12, help="Layers of the random GPT-2 built when --model is unset."),
    width: int = typer.Option(768, help="Width of that GPT-2 (heads of 64)."),
    batch: int = typer.Option(16, help="PPO's prompts (= rollouts) per update."),
    group_size: int = typer.Option(4, help="K: RLOO's and GRPO's answers per prompt."),
    critic_free_prompts: int | None = typer.Option(
        None, help="RLOO's and GRPO's prompts per update; default batch / K (same rollouts)."
    ),
    mini_batch: int = typer.Option(8, help="Rollouts per optimizer step (all three)."),
    grad_accum: int = typer.Option(2, help="Micro-batches per mini-batch (4 rows a pass)."),
    new_tokens: int = typer.Option(48, help="max_new_tokens of each rollout."),
    epochs: int = typer.Option(4, help="Passes over each rollout batch (all three)."),
    updates: int = typer.Option(2, help="Updates to time per algorithm."),
    repeats: int = typer.Option(1, help="Times to run PPO, RLOO, GRPO in turn."),
    algorithms: str = typer.Option(",".join(ALGORITHMS), help="Comma-separated subset."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    dtype: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, float32 on CPU), bf16..."),
    threads: int = typer.Option(2, help="torch CPU threads per process."),
) -> None:
    """Print seconds per update and peak memory of PPO, RLOO and GRPO on one model."""
    chosen = [a.strip() for a in algorithms.split(",") if a.strip()]
    if not chosen or set(chosen) - set(ALGORITHMS):
        raise typer.BadParameter(f"--algorithms: a subset of {', '.join(ALGORITHMS)}")
    prompts = critic_free_prompts if critic_free_prompts is not None else batch // group_size
    if prompts < 1:
        raise typer.BadParameter("--batch / --group-size is below 1 prompt")
    args = {
        "batch": batch, "mini_batch": mini_batch, "grad_accum": grad_accum,
        "new_tokens": new_tokens, "ppo_epochs": epochs, "steps": updates, "seed": seed,
        "device": device, "dtype": dtype, "threads": threads,
        "group_size": group_size, "critic_free_prompts": prompts,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_random_gpt2(model, Path(tmp), layers, width, dtype, device)
        rm_dir = str(Path(tmp) / "reward-model")
        run_in_process(_save_reward_model, model, rm_dir, args)
        runs = []
        for _ in range(repeats):
            for algorithm in chosen:
                runs.append(_one(algorithm, model, rm_dir, args))
                r = runs[-1]
                console.print(
                    f"  {algorithm}: {r['peak_rss_mb']:.0f} MB peak RSS, s/update "
                    f"{r['step_seconds']}, CPU s/update {_cpu(r)}"
                )

    console.print(
        f"model {model}; PPO {batch} prompts x 1, RLOO/GRPO {prompts} prompts x {group_size}; "
        f"mini-batch {mini_batch}, grad_accum {grad_accum}, {new_tokens} new tokens, {epochs} "
        f"epochs, {updates} updates, device {device}, dtype {dtype}, {threads} threads"
    )
    table = Table(title="Seconds per update and peak memory, shared base (one process each)")
    columns = ("algorithm", "rollouts/update", "trainable (M)", "s/update (each)",
               "s/update (mean)", "CPU s/update", "weights MB", "peak RSS MB", "peak GPU MB",
               "RSS / PPO's")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    ppo_peaks = [r["peak_rss_mb"] for r in runs if r["layout"] == "shared"]
    ppo_peak = sum(ppo_peaks) / len(ppo_peaks) if ppo_peaks else None
    for r in runs:
        name = "ppo" if r["layout"] == "shared" else r["layout"]
        secs = r["step_seconds"]
        table.add_row(
            name, str(batch if name == "ppo" else prompts * group_size),
            f"{r['trainable_m']:.2f}", " ".join(f"{s:.1f}" for s in secs),
            f"{sum(secs) / len(secs):.1f}", _cpu(r), f"{r['weights_mb']:.0f}",
            f"{r['peak_rss_mb']:.0f}", f"{r['peak_gpu_mb']:.0f}",
            "-" if ppo_peak is None else f"{r['peak_rss_mb'] / ppo_peak:.2f}",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    app()
