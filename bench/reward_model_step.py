"""Milliseconds per reward-model training step, split into forward, backward and optimizer.

Where `bench/reward_model.py` times whole runs to an accuracy, this times single steps of
the same trainers on the same rankings, so one can see what a step costs and why: the K-way
step with its prompt run once (two passes: prompt, then the K responses against its cached
keys/values), the K-way step on K full sequences (one pass), and the pairwise step, each at
equal sequences per step. On a GPU, a small model's step is bound by the host launching
kernels (`--profile` prints the operators' CPU and CUDA time), and then a second pass can
cost more than the tokens it saves; on a CPU, time follows the tokens.

    .venv/bin/python -m bench.reward_model_step --model /tmp/tiny      # default: builds one
    .venv/bin/python -m bench.reward_model_step --device cuda --profile
"""

from __future__ import annotations

import random
import tempfile
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench.reward_model import lexicon_rankings, model_or_tiny

app = typer.Typer(add_completion=False)
console = Console(width=120)


@app.command()
def main(
    model: str | None = typer.Option(None, help="Model id or dir; default: build a tiny one."),
    device: str = typer.Option("cpu"),
    threads: int = typer.Option(1),
    rankings_per_step: int = typer.Option(4, help="Rankings' worth of sequences per step."),
    steps: int = typer.Option(30, help="Timed steps per variant (after 5 untimed)."),
    context_words: int = typer.Option(0, help="Corpus words before each prompt's question."),
    pad_multiple: int = typer.Option(1, help="Pad batches to a multiple of this length."),
    profile: bool = typer.Option(False, help="Print the top operators of the K-way step."),
    seed: int = typer.Option(0),
) -> None:
    """Print ms per step (forward, backward, optimizer) of each trainer's step."""
    import torch

    from bench.pairwise_reward_model import encoded_pairs
    from worker.training.losses import ranking_loss
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.reward_model import (
        RankingExample,
        RewardModel,
        RewardModelConfig,
        _ranking_batch,
        encode_rankings,
    )

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_tiny(model, tmp, steps=200, seed=seed)
        tokenizer = load_tokenizer(model)
        base = load_causal_lm(model, device=device)
        ensure_pad_token(tokenizer, base)
    torch.manual_seed(seed)
    rm = RewardModel.create(base, RewardModelConfig(device=device), base_model=model)
    rm.train()
    made = lexicon_rankings(200, seed=seed, context_words=context_words)
    rankings = encode_rankings(
        tokenizer, [RankingExample(*m) for m in made], max_length=96 + 3 * context_words
    )
    pairs = encoded_pairs(rankings)
    k = len(rankings[0].rows)
    params = [p for p in rm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    rng = random.Random(seed)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(units: list[Any], per_step: int, share: bool, n: int) -> dict[str, float]:
        totals = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        for i in range(n + 5):
            batch = rng.sample(units, per_step)
            sync()
            t0 = time.perf_counter()
            pad = tokenizer.pad_token_id
            scores, groups, _ = _ranking_batch(
                rm, batch, pad, share_prompt=share, pad_to_multiple_of=pad_multiple
            )
            loss, _ = ranking_loss(scores, groups, center_coef=0.01)
            sync()
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            sync()
            t3 = time.perf_counter()
            if i >= 5:
                totals["forward"] += t1 - t0
                totals["backward"] += t2 - t1
                totals["optimizer"] += t3 - t2
        return {key: 1000 * value / n for key, value in totals.items()}

    b = rankings_per_step
    pairs_per_step = max(1, round(b * k / 2))
    variants = [
        ("K-way, prompt once", rankings, b, True, b * k),
        ("K-way, full sequences", rankings, b, False, b * k),
        ("pairwise", pairs, pairs_per_step, False, 2 * pairs_per_step),
    ]
    title = f"one training step, {device}, {threads} thread(s), K={k}, padded to x{pad_multiple}"
    table = Table(title=title)
    for column in ("step", "seqs", "forward ms", "backward ms", "optimizer ms", "total ms",
                   "ms/seq"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, units, per_step, share, seqs in variants:
        ms = run(units, per_step, share, steps)
        total = sum(ms.values())
        table.add_row(name, str(seqs), *(f"{ms[key]:.2f}" for key in ms), f"{total:.2f}",
                      f"{total / seqs:.3f}")  # fmt: skip
    console.print(table)
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU]
        if device.startswith("cuda"):
            activities.append(ProfilerActivity.CUDA)
        with torch_profile(activities=activities) as prof:
            run(rankings, b, True, 8)
        sort = "self_cpu_time_total"
        console.print(prof.key_averages().table(sort_by=sort, row_limit=20), soft_wrap=True)


if __name__ == "__main__":
    app()
