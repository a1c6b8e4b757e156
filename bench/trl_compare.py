"""RankLoop's RLOO and GRPO beside TRL's RLOOTrainer and GRPOTrainer (issue 24).

Same local model directory, prompts, group size K, token budget, LoRA settings, optimiser
settings and a fixed reward (`bench._trl_side.length_reward`: words away from a target) on
both sides; seconds per update and peak RSS of each, every run in a process of its own. One
update is one batch of rollouts (prompts x K) reused for `--epochs` passes in mini-batches:
TRL's generation batch with num_iterations = epochs.

TRL is never a dependency of RankLoop: this bench makes its own virtual environment
(`bench/.trl-venv`, gitignored) with the CPU torch build RankLoop's venv has (from local
disk; plain `pip install torch` would pull the CUDA build), trl and peft, and runs TRL's side
there as `bench/_trl_side.py` (settings in as JSON, figures out as JSON). Sides alternate
(ours, TRL's, per algorithm and repeat) so a load that changes on a shared machine falls on
both alike. On a machine other jobs load, wall seconds follow the load more than the code:
"CPU s/update" (the process's CPU time over its training call, model loading excluded, per
update) is the steadier figure. The settings that still differ are printed under the table.
Peak RSS follows glibc's allocator as well as the tensors: its dynamic mmap threshold keeps
freed activations in the heap, by a margin that differs between the sides (at 12 x 768,
RankLoop 120-165 MB above TRL by default, 37 MB below with the threshold fixed).
`MALLOC_MMAP_THRESHOLD_=131072`, inherited by both sides' processes, makes the peak follow the
live tensors, at ~25 % more CPU time for the page faults.

    .venv/bin/python -m bench.trl_compare                      # tiny model, 2 updates
    .venv/bin/python -m bench.trl_compare --model /tmp/tiny --updates 3 --repeats 2
    .venv/bin/python -m bench.trl_compare --random-gpt2        # the 12 x 768 GPT-2 shape
    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python -m bench.trl_compare --random-gpt2 --updates 1
    .venv/bin/python -m bench.trl_compare --install-only       # just make the TRL venv
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process
from bench._trl_side import RESULT_MARK, length_reward
from bench.ppo import _status_mb, bench_prompts, build_random_gpt2

app = typer.Typer(add_completion=False)
console = Console(width=160)
TRL_VENV = Path(__file__).resolve().parent / ".trl-venv"
TRL_SIDE = Path(__file__).resolve().parent / "_trl_side.py"
ALGORITHMS = ("grpo", "rloo")

DIFFERENCES = [
    "stops: RankLoop ends an answer at EOS or an end-of-turn token (stop strings off here: "
    "stop_strings=[]); TRL at EOS",
    "RLOO's ratio: RankLoop clips per token (PPO's surrogate, averaged over the micro-batch's "
    "tokens); TRL's RLOOTrainer clips one ratio per sequence (sum of log-probs), mean over "
    "sequences",
    "GRPO's KL term: both β·k3 per token in the loss; RankLoop averages it with the surrogate "
    "over each answer's tokens, then answers (loss_type 'grpo' on TRL's side too)",
    "prompt ids: RankLoop formats and tokenises each prompt itself (app/prompt_tokens.py); "
    "TRL gets the same formatted text and tokenises it with its own call",
    "mini-batches: RankLoop draws a fresh permutation of the rollouts per epoch; TRL's "
    "RepeatSampler reuses one order for its num_iterations passes",
    "reference: both the base with the LoRA adapter disabled (one copy of the weights)",
    "gradient checkpointing off and float32 on both (TRL's defaults are on and bf16)",
]
"""What is not matched, and why it cannot be or was left so."""


def ensure_trl_venv(venv: Path = TRL_VENV) -> Path:
    """The venv's python, made and filled on first use: torch pinned to the build RankLoop's
    venv has (a CPU wheel on local disk), then trl and peft as pip resolves them."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([str(python), "-c", "import trl, peft"], capture_output=True).returncode
        == 0
    ):
        return python
    torch_pin = "torch==" + importlib.metadata.version("torch").split("+")[0]
    console.print(f"making {venv}: {torch_pin}, trl, peft ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", torch_pin, "trl", "peft"],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"installing TRL failed:\n{result.stdout}\n{result.stderr}")
    return python


def _ours(spec: dict[str, Any]) -> dict[str, Any]:
    """RankLoop's stage with the spec's settings, in a fresh process; the TRL side's figures."""
    import torch

    from bench.critic_free import critic_free_trainer
    from worker.training.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(spec["threads"])
    config_class, train = critic_free_trainer(spec["algorithm"])
    config = config_class(
        steps=spec["updates"],
        batch_size=spec["prompts_per_update"],
        group_size=spec["group_size"],
        mini_batch_size=spec["mini_batch"],
        grad_accum=spec["grad_accum"],
        epochs=spec["epochs"],
        lr=spec["lr"],
        adam_eps=spec["adam_eps"],
        max_new_tokens=spec["new_tokens"],
        stop_strings=[],  # EOS only, as TRL
        kl_coef=spec["kl_coef"],
        clip_range=spec["clip_range"],
        max_grad_norm=spec["max_grad_norm"],
        missing_eos_penalty=None,  # TRL has none: the reward alone
        lora_r=spec["lora_r"],
        lora_alpha=spec["lora_alpha"],
        lora_dropout=spec["lora_dropout"],
        seed=spec["seed"],
        device="cpu",
        dtype="float32",
    )
    target = spec["target_words"]

    def score_fn(prompts: list[Any], responses: list[str]) -> list[float]:
        return length_reward(responses, target)

    tokenizer = load_tokenizer(spec["model"])
    base = load_causal_lm(spec["model"], device="cpu", dtype="float32")  # as TRL's side, untimed
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as out_dir:
        result = train(
            base, tokenizer, spec["raw_prompts"], score_fn, config,
            out_dir=Path(out_dir),
        )  # fmt: skip
    cpu = time.process_time() - cpu
    steps = result.metrics_per_step
    return {
        "algorithm": spec["algorithm"],
        "step_seconds": [m["time"] for m in steps],
        "cpu_seconds": cpu / len(steps),
        "peak_rss_mb": _status_mb("VmHWM"),
        "trainable_m": sum(p.numel() for p in result.model.parameters() if p.requires_grad) / 1e6,
        "reward_first": steps[0]["score"],
        "reward_last": steps[-1]["score"],
    }


def _theirs(python: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's trainer in its venv, in a fresh process."""
    result = subprocess.run(
        [str(python), str(TRL_SIDE)], input=json.dumps(spec), capture_output=True, text=True
    )
    lines = [x for x in result.stdout.splitlines() if x.startswith(RESULT_MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"the TRL side failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return dict(json.loads(lines[-1].removeprefix(RESULT_MARK)))


def _formatted_prompts(model: str, prompts: list[str]) -> list[str]:
    """The text RankLoop's stages put in front of the model for each prompt (chat template or
    the tiny model's dialogue format), handed to TRL as plain prompts."""
    from app.prompt_tokens import format_prompt
    from worker.training.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    return [format_prompt(tokenizer, p) for p in prompts]


@app.command()
def main(
    model: str | None = typer.Option(
        None, help="Model dir; default: the tiny model, built here (rankloop models make-tiny)."
    ),
    random_gpt2: bool = typer.Option(
        False, help="Instead: a random 12 x 768 GPT-2 (bench.ppo.build_random_gpt2)."
    ),
    algorithms: str = typer.Option(",".join(ALGORITHMS), help="Comma-separated subset."),
    prompts_per_update: int = typer.Option(4, help="Prompts per update."),
    group_size: int = typer.Option(4, help="K: answers per prompt."),
    mini_batch: int = typer.Option(8, help="Rollouts per optimizer step."),
    grad_accum: int = typer.Option(2, help="Micro-batches per mini-batch."),
    epochs: int = typer.Option(4, help="Passes over each rollout batch (TRL num_iterations)."),
    new_tokens: int = typer.Option(48, help="Answer budget (TRL max_completion_length)."),
    target_words: int = typer.Option(12, help="The reward's target length in words."),
    updates: int = typer.Option(2, help="Updates per run."),
    repeats: int = typer.Option(1, help="Runs per side and algorithm, alternating sides."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, help="torch CPU threads per process, both sides."),
    install_only: bool = typer.Option(False, help="Make the TRL venv and stop."),
) -> None:
    """Print seconds per update and peak RSS of RankLoop's and TRL's RLOO and GRPO."""
    python = ensure_trl_venv()
    if install_only:
        console.print(f"TRL venv ready: {python}")
        return
    chosen = [a.strip() for a in algorithms.split(",") if a.strip()]
    if not chosen or set(chosen) - set(ALGORITHMS):
        raise typer.BadParameter(f"--algorithms: a subset of {', '.join(ALGORITHMS)}")
    with tempfile.TemporaryDirectory() as tmp:
        if model is None and random_gpt2:
            model = str(build_random_gpt2(Path(tmp) / "gpt2-random"))
        elif model is None:
            from worker.training.tiny_model import make_tiny_model

            model = str(make_tiny_model(Path(tmp) / "tiny"))
        raw = bench_prompts()
        spec_base = {
            "model": model, "raw_prompts": raw, "prompts": _formatted_prompts(model, raw),
            "prompts_per_update": prompts_per_update, "group_size": group_size,
            "mini_batch": mini_batch, "grad_accum": grad_accum, "epochs": epochs,
            "new_tokens": new_tokens, "target_words": target_words, "updates": updates,
            "lr": 3e-4, "adam_eps": 1e-5, "kl_coef": 0.05, "clip_range": 0.2,
            "max_grad_norm": 1.0, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
            "seed": seed, "threads": threads,
        }  # fmt: skip
        runs: list[tuple[str, dict[str, Any]]] = []
        for _ in range(repeats):
            for algorithm in chosen:
                spec = {**spec_base, "algorithm": algorithm}
                runs.append(("rankloop", run_in_process(_ours, spec)))
                console.print(f"  rankloop {algorithm}: {runs[-1][1]['step_seconds']}")
                runs.append(("trl", _theirs(python, spec)))
                console.print(f"  trl {algorithm}: {runs[-1][1]['step_seconds']}")

    versions = next(r["versions"] for side, r in runs if side == "trl")
    console.print(
        f"model {model}; {prompts_per_update} prompts x {group_size} answers per update, "
        f"{new_tokens} new tokens, mini-batch {mini_batch} in {grad_accum} micro-batches, "
        f"{epochs} epochs, LoRA r 8 / alpha 16 all-linear, lr 3e-4, beta 0.05, {updates} "
        f"updates, {threads} threads; TRL {versions['trl']}, transformers "
        f"{versions['transformers']}, torch {versions['torch']}"
    )
    table = Table(title="RankLoop vs TRL: seconds per update and peak RSS (one process each)")
    columns = ("algorithm", "side", "s/update (each)", "s/update (mean)", "CPU s/update",
               "peak RSS MB", "trainable (M)", "reward first → last")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for side, r in runs:
        secs = r["step_seconds"]
        table.add_row(
            r["algorithm"], side, " ".join(f"{s:.1f}" for s in secs),
            f"{sum(secs) / max(len(secs), 1):.1f}", f"{r['cpu_seconds']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['trainable_m']:.3f}", f"{r['reward_first']:+.2f} → {r['reward_last']:+.2f}",
        )  # fmt: skip
    console.print(table)
    console.print("Settings that differ:")
    for line in DIFFERENCES:
        console.print(f"  - {line}")


if __name__ == "__main__":
    app()
