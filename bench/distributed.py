"""Throughput of the reward-model and PPO stages on 1 and N processes (torchrun, gloo on CPU,
nccl on CUDA), and the scaling factor; the sampling backends where their benchmark exists.

Each setting runs as `python -m torch.distributed.run --standalone --nproc_per_node N -m
bench.distributed --rank-run ...`, one OpenMP thread per process on CPU (the issue's goal:
2 processes >= 1.6x one on the 12 x 768 shape). The global batch is the same for every N
(the stages' rule: N ranks share it), so sequences per second compare like for like.

    .venv/bin/python -m bench.distributed                 # random 12x768 GPT-2 (~86M), 1 and 2
    .venv/bin/python -m bench.distributed --small         # 2 x 128: a quick run of the same
    .venv/bin/python -m bench.distributed --procs 1 --procs 2 --procs 4 --device cuda
    .venv/bin/python -m bench.distributed --small --fsdp  # N > 1 processes shard the model

Figures: reward model = K samples of each ranking scored and trained per second (sequences
= optimizer steps x batch x K over the training seconds); PPO = rollouts per second over the
updates after the first (sampling, scoring, log-probs, 4 epochs of optimisation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)
console = Console(width=120)
ROOT = Path(__file__).resolve().parents[1]


def _rank_run(kind: str, model: str, rm_dir: str, out: str, args: dict[str, Any]) -> None:
    """One rank of one setting: train, then rank 0 writes its figures to `out`."""
    import torch

    from worker.distributed.context import init_from_env, shutdown

    ctx = init_from_env()
    if ctx.device.type == "cpu":
        torch.set_num_threads(1)
    figures = _reward_model(model, args, ctx) if kind == "reward_model" else _ppo(
        model, rm_dir, args, ctx
    )  # fmt: skip
    if ctx.is_main:
        Path(out).write_text(json.dumps(figures))
    shutdown()


def _reward_model(model: str, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from bench.reward_model import lexicon_rankings
    from worker.training.reward_model import RankingExample, RewardModelConfig, train_reward_model

    k = args["k"]
    made = lexicon_rankings(args["rankings"], k=k, seed=0)
    examples = [RankingExample(p, r, g) for p, r, g in made]
    config = RewardModelConfig(
        epochs=1,
        batch_size=args["rm_batch"],
        heldout_fraction=0.1,
        max_length=96,
        max_steps=args["rm_steps"],
        seed=0,
        device=None if ctx.device.type == "cpu" else str(ctx.device),
    )
    with tempfile.TemporaryDirectory() as out_dir:
        result = train_reward_model(
            model, examples, config, out_dir=Path(out_dir), ctx=ctx, fsdp=args["fsdp"]
        )
    sequences = result.steps * config.batch_size * k
    return {"sequences": sequences, "seconds": result.train_seconds}


def _ppo(model: str, rm_dir: str, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from bench.ppo import bench_prompts
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.ppo import PPOConfig, SharedBaseReward, train_ppo

    config = PPOConfig(
        steps=args["ppo_steps"],
        batch_size=args["ppo_batch"],
        mini_batch_size=args["ppo_batch"] // 2,
        grad_accum=2,
        ppo_epochs=4,
        max_new_tokens=args["new_tokens"],
        lr=5e-5,
        seed=0,
    )
    tokenizer = load_tokenizer(model)
    base = load_causal_lm(model, device=str(ctx.device))
    ensure_pad_token(tokenizer, base)
    reward = SharedBaseReward(Path(rm_dir), batch_size=config.micro_batch_size)
    with tempfile.TemporaryDirectory() as out_dir:
        result = train_ppo(
            base, tokenizer, bench_prompts(), reward, config, out_dir=Path(out_dir), ctx=ctx,
            fsdp=args["fsdp"],
        )  # fmt: skip
    timed = [m["time"] for m in result.metrics_per_step]
    timed = timed[1:] if len(timed) > 1 else timed  # the first update warms up
    return {"sequences": config.batch_size * len(timed), "seconds": sum(timed)}


def _launch(kind: str, procs: int, model: str, rm_dir: str, args: dict[str, Any]) -> dict:
    """One setting on `procs` processes; rank 0's figures and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(procs), "-m", "bench.distributed", "--rank-run",
            kind, model, rm_dir, str(out), json.dumps(args),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        tic = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - tic
        if done.returncode != 0:
            raise RuntimeError(f"{kind} on {procs} processes failed:\n{done.stderr[-4000:]}")
        figures = dict(json.loads(out.read_text()))
    return {**figures, "wall": wall, "per_s": figures["sequences"] / figures["seconds"]}


def _sampling(model: str) -> str:
    """The generation backends' benchmark (hf vs openai served locally), if it exists."""
    try:
        import bench.generation_backends as backends
    except ModuleNotFoundError:
        return "sampling: bench/generation_backends.py is not there; skipped"
    run = getattr(backends, "run_comparison", None)
    if run is None:
        return "sampling: bench/generation_backends.py has no run_comparison(); run it directly"
    return str(run(model))


@app.command()
def main(
    small: bool = typer.Option(False, help="2 x 128 instead of 12 x 768, fewer steps."),
    procs: list[int] = typer.Option([1, 2], help="Process counts to run (repeat the option)."),
    kinds: list[str] = typer.Option(["reward_model", "ppo"], help="reward_model and/or ppo."),
    rankings: int = typer.Option(64, help="Rankings the reward model trains on."),
    k: int = typer.Option(4, help="Samples per ranking."),
    rm_batch: int = typer.Option(8, help="Rankings per reward-model step (global)."),
    rm_steps: int = typer.Option(6, help="Reward-model optimizer steps timed."),
    ppo_batch: int = typer.Option(8, help="Rollouts per PPO update (global)."),
    ppo_steps: int = typer.Option(3, help="PPO updates (the first is not timed)."),
    new_tokens: int = typer.Option(32, help="max_new_tokens of each rollout."),
    sampling: bool = typer.Option(True, help="Also the sampling backends' comparison."),
    fsdp: bool = typer.Option(False, help="Shard the model over N > 1 processes (FSDP2)."),
) -> None:
    """Print sequences per second for each stage and process count, and the scaling."""
    from bench.ppo import _save_reward_model, build_random_gpt2

    layers, width = (2, 128) if small else (12, 768)
    args = {
        "k": k, "rankings": rankings, "rm_batch": rm_batch, "rm_steps": rm_steps,
        "ppo_batch": ppo_batch, "ppo_steps": ppo_steps, "new_tokens": new_tokens,
        "device": "cpu", "dtype": "auto", "seed": 0, "fsdp": fsdp,
    }  # fmt: skip
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"building a random GPT-2 ({layers} layers x {width}, vocab 2048)...")
        model = str(build_random_gpt2(Path(tmp) / "gpt2", n_layer=layers, n_embd=width))
        rm_dir = str(Path(tmp) / "rm")
        _save_reward_model(model, rm_dir, args)
        for kind in kinds:
            for n in procs:
                console.print(f"{kind} on {n} process(es)...")
                rows.append((kind, n, _launch(kind, n, model, rm_dir, args)))
        note = _sampling(model) if sampling else "sampling: not run"

    layout = "FSDP2" if fsdp else "DDP"
    table = Table(title=f"Throughput, {layers} x {width} GPT-2, {layout}, one thread per process")
    for column in ("stage", "processes", "sequences", "seconds", "seq/s", "scaling", "wall s"):
        table.add_column(column, justify="right")
    for kind, n, r in rows:
        one = next((x for kk, nn, x in rows if kk == kind and nn == 1), None)
        scaling = f"{r['per_s'] / one['per_s']:.2f}x" if one else "-"
        table.add_row(
            kind, str(n), str(r["sequences"]), f"{r['seconds']:.1f}", f"{r['per_s']:.2f}",
            scaling, f"{r['wall']:.0f}",
        )  # fmt: skip
    console.print(table)
    console.print(note)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-run":
        _rank_run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], json.loads(sys.argv[6]))
    else:
        app()
