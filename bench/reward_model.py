"""K-way ranking loss vs pairwise (TRL-style) reward-model training, to the same accuracy.

Both trainers see the same synthetic K=9 rankings, the same tiny model, LoRA settings,
optimizer (AdamW, warm-up, clipping) and loss function, and are evaluated on the same
held-out prompts about every `--eval-seqs` training sequences; each stops at the first
evaluation reaching the highest of `--targets`, and for every target the first evaluation
at or above it gives the sequences scored with gradients ("forward passes") and training
seconds (evaluation excluded) to get there. Each run has its own process, so its peak RSS
is its own. Both trainers tokenise their rankings once before the first step (counted in
the training time); the K-way trainer then runs each ranking's prompt once for its K
samples (the product default; `--no-share-prompt` scores K full sequences), the pairwise
one scores chosen and rejected as two full sequences, as TRL's RewardTrainer does.

A good learning rate and batch size differ between the two units (a K-way step over B
rankings averages B·C(K,2) pairs; a pairwise step over P pairs averages P), so each method
is run on the same grid of `--lrs` × `--batch-sizes` and compared at its own best setting
(least training time to the highest target). Batch size B means B rankings per K-way step
and, for pairwise, B rankings' worth of sequences (B·K/2 pairs, `--pairwise-batch seqs`) or
of pairs (B·C(K,2) pairs, `--pairwise-batch pairs`).

The speed ratio is two factors: sequences needed (K-way needs ~2-2.7x fewer: one ranking's
36 pairs in 9 sequences against 1 pair in 2) times the cost of a sequence ("ms/seq"). The
second depends on the model and the prompt: the K-way path runs a ranking's prompt once, so
it gains as the prompt grows relative to the responses and as the model becomes
compute-bound. Measured on 2 CPU cores, to 0.75 held-out accuracy (issue 5's notes):
  default (2 layers x 96, prompt ~15 tokens, responses ~17): 2.6x fewer sequences, 0.95 vs
    1.12 ms/seq, 3.0x in all (K-way batch 1 at lr 3e-3, pairwise batch 2 at 2e-3; K-way at
    batch 4 gets 0.77 ms/seq and needs 1620 sequences); 2.5x on the earlier grid (batch 1, 2);
  --layers 4 --width 256: 9.1 vs 12.2 ms/seq, 3.4x;
  --layers 4 --width 256 --context-words 24 (prompt ~60 tokens): 10.8 vs 29.6 ms/seq, 5.4x.
Higher targets do not close the gap. Both methods go on to 0.85-0.88 within 8 epochs, so
`--targets 0.7,0.75,0.8,0.82,0.84 --max-epochs 8 --max-seqs 30000` times the part of training
the defaults leave out (each setting runs until 0.84; the grid of lr 2e-3, 3e-3, 5e-3 x batch
1, 2, 4 takes about 25 minutes). On a slower 2-core machine than the figures above (K-way
~1.6 ms/seq), each method at its best setting for 0.84 (K-way lr 2e-3, batch 2 or 4; pairwise
lr 2e-3, batch 4) gave 1.7-2.4x at 0.70-0.80 and 2.8-3.3x at 0.82-0.84: pairwise reaches 0.84
after 12,420 sequences, about one pass over the pairs (11,520), so it is not held back by
having to pass over each pair many times, and the sequence ratio stays near 2-2.7x. A single
shared setting (lr 3e-3, batch 4) printed 4-6x at 0.75-0.84, but that is not pairwise's best
setting; comparing each at its own best is what the grid is for.
On an NVIDIA H200 (--device cuda, bf16) the default benchmark is not faster than on a CPU:
a step of the 2 x 96 model keeps the GPU busy ~1.6 ms and the host ~25 ms launching its
~600 kernels, so time follows steps, not sequences. Grid 2e-3..5e-3 x batch 1, 2, 4: K-way
1,800 sequences in 3.70 s (lr 5e-3, batch 4), pairwise 3,960 in 3.30 s (lr 3e-3, batch 4):
2.2x fewer sequences, 0.9x the speed: a K-way step (a prompt pass, then a response pass)
took ~74 ms there, a pairwise step of as many sequences ~30 ms. `bench/reward_model_step.py`
splits a step's time; on a GPU, try `--no-share-prompt` and `--pad-multiple 16` next.
Deeper tiny models learn the lexicon rule slowly, whichever the method: a 6 x 384 model
(200 pre-training steps, LM loss 3.56 like the 2 x 96's 3.53) reaches 0.60-0.64 in two
epochs at lr 1e-3 or 3e-3 (lr 1e-2 stays at chance), with or without the shared prompt and
at LoRA rank 8 or 32, against 0.77 for 2 x 96. With `--context-words 48` neither method
reaches 0.65 (K-way 0.595, pairwise 0.581 at lr 1e-3, batch 4) though the step costs split
wide apart: 18.3 against 63.7 ms/seq, peak RSS 1.4 against 4.0 GB.

Tasks:
  lexicon (default)  15 "good" and 15 "bad" words; true value = #good - #bad + N(0, noise);
                     the rule has to be learned word by word, so more data per pass counts.
  marker             more "wonderful" is better (the unit tests' rule); learned in a few
                     steps by either method, so it measures step count, not data use.

    .venv/bin/python -m bench.reward_model            # builds a tiny model first (~20 s)
    .venv/bin/python -m bench.reward_model --task marker --noise 0.2 --targets 0.8,0.9
    .venv/bin/python -m bench.reward_model --lrs 3e-3 --batch-sizes 1   # a single setting
    .venv/bin/python -m bench.reward_model --layers 4 --width 256 --context-words 24 \
        --lrs 1e-3,2e-3   # a compute-bound model and prompts longer than the answers
"""

from __future__ import annotations

import math
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process

app = typer.Typer(add_completion=False)
console = Console(width=120)


def lexicon_rankings(
    n_prompts: int, *, k: int = 9, seed: int = 0, noise: float = 0.5, context_words: int = 0
) -> list[tuple[str, list[str], list[int]]]:
    """Rankings by #good - #bad words plus Gaussian noise; strict orders (no ties).

    `context_words` > 0 starts each prompt with that many words of the corpus (a conversation
    so far, or a document to answer about), as real prompts often are longer than answers.
    """
    from worker.training.tiny_model import corpus_documents

    documents = corpus_documents()
    counts = Counter(w for d in documents for w in re.findall(r"[a-z]+", d.lower()))
    corpus_words = " ".join(documents).split()
    vocab = [w for w, _ in counts.most_common(400)[50:]]  # skip the commonest words
    rng = random.Random(seed)
    rng.shuffle(vocab)
    good, bad, neutral = set(vocab[:15]), set(vocab[15:30]), vocab[30:]
    rankings = []
    for i in range(n_prompts):
        responses, values = [], []
        for _ in range(k):
            words = [
                rng.choice(vocab[:30]) if rng.random() < 0.3 else rng.choice(neutral)
                for _ in range(16)
            ]
            value = sum(w in good for w in words) - sum(w in bad for w in words)
            responses.append(" ".join(words) + ".")
            values.append(value + rng.gauss(0.0, noise))
        order = sorted(range(k), key=lambda j: -values[j])
        groups = [order.index(j) for j in range(k)]
        prompt = f"Write a few words about topic {i}."
        if context_words > 0:
            start = rng.randrange(max(1, len(corpus_words) - context_words))
            prompt = " ".join(corpus_words[start : start + context_words]) + "\n\n" + prompt
        rankings.append((prompt, responses, groups))
    return rankings


def model_or_tiny(model: str | None, tmp: str, *, steps: int, seed: int, **shape: Any) -> str:
    """`model`, or when it is None a tiny model built in `tmp` (`make_tiny_model`, with the
    layers and width of `shape`) and trained for `steps` steps."""
    if model is not None:
        return model
    from worker.training.tiny_model import make_tiny_model

    console.print(f"building a tiny model ({shape or 'default shape'}, {steps} steps)...")
    return str(make_tiny_model(Path(tmp) / "tiny", steps=steps, seed=seed, **shape))


def _run(method: str, model: str, args: dict[str, Any]) -> dict[str, Any]:
    """One training run (one method, lr and batch size) in a fresh process; its figures."""
    import torch

    from bench.pairwise_reward_model import train_pairwise
    from worker.training.reward_model import RankingExample, RewardModelConfig, train_reward_model
    from worker.training.tiny_model import synthetic_rankings

    torch.set_num_threads(args["threads"])
    if args["task"] == "marker":
        made = synthetic_rankings(
            args["prompts"], k=args["k"], seed=args["seed"], noise=args["noise"]
        )
    else:
        made = lexicon_rankings(
            args["prompts"],
            k=args["k"],
            seed=args["seed"],
            noise=args["noise"],
            context_words=args["context_words"],
        )
    examples = [RankingExample(p, r, g) for p, r, g in made]
    k, batch = args["k"], args["batch_size"]
    if method == "kway":
        seqs_per_step = batch * k
        extra: dict[str, Any] = {}
    else:
        per_ranking = k / 2 if args["pairwise_batch"] == "seqs" else k * (k - 1) / 2
        extra = {"pairs_per_step": max(1, round(batch * per_ranking))}
        seqs_per_step = 2 * extra["pairs_per_step"]
    config = RewardModelConfig(
        lr=args["lr"],
        epochs=args["max_epochs"],
        batch_size=batch,
        heldout_fraction=0.2,
        max_length=args["max_length"],
        # Evaluate after about the same number of training sequences, whatever the step size.
        eval_every=max(1, round(args["eval_seqs"] / seqs_per_step)),
        target_accuracy=max(args["targets"]),
        # A setting that never gets there must not run for minutes.
        max_steps=math.ceil(args["max_seqs"] / seqs_per_step) if args["max_seqs"] else None,
        seed=args["seed"],
        device=args["device"],
        share_prompt=args["share_prompt"],  # K-way only; pairwise scores full sequences (TRL)
        pad_to_multiple_of=args["pad_multiple"],
    )
    trainer = train_reward_model if method == "kway" else train_pairwise
    with tempfile.TemporaryDirectory() as out_dir:
        tic = time.perf_counter()
        result = trainer(model, examples, config, out_dir=Path(out_dir), **extra)
        wall = time.perf_counter() - tic
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "method": method,
        "lr": args["lr"],
        "batch": batch,
        "seqs_per_step": seqs_per_step,
        "reached": result.reached_target,
        "accuracy": result.heldout_accuracy,
        "steps": result.steps,
        "passes": result.train_forward_passes,
        "train_s": result.train_seconds,
        "wall_s": wall,
        "rss_mb": rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20,
        "gpu_mb": peak_gpu,
        "curve": [
            (e["accuracy"], e["train_forward_passes"], e["train_seconds"])
            for e in result.evaluations
        ],
    }


def _in_subprocess(method: str, model: str, args: dict[str, Any]) -> dict[str, Any]:
    """One setting per process; torch, transformers and peft imported once for the grid."""
    preload = ("torch", "peft", "worker.training.reward_model", "bench.pairwise_reward_model")
    return run_in_process(_run, method, model, args, preload=preload)


@app.command()
def main(
    model: str | None = typer.Option(None, help="Model id or dir; default: build a tiny one."),
    device: str = typer.Option("cpu"),
    tiny_steps: int = typer.Option(200, help="Training steps of the tiny model."),
    layers: int = typer.Option(2, help="Layers of the tiny model built when no --model."),
    width: int = typer.Option(96, help="Width (n_embd) of the tiny model built when no --model."),
    context_words: int = typer.Option(
        0, help="lexicon: corpus words before each prompt's question (a longer prompt)."
    ),
    task: str = typer.Option("lexicon", help="lexicon or marker (see the module docstring)."),
    prompts: int = typer.Option(200, help="Rankings (one per prompt); 20% held out."),
    k: int = typer.Option(9, help="Samples per ranking."),
    noise: float = typer.Option(0.5, help="lexicon: value noise std; marker: swap chance."),
    targets: str = typer.Option(
        "0.65,0.7,0.75", help="Held-out accuracies to time; runs stop at the highest."
    ),
    lrs: str = typer.Option("1e-3,2e-3,3e-3,5e-3", help="Learning rates tried by both methods."),
    batch_sizes: str = typer.Option(
        "1,2,4", help="Batch sizes (rankings' worth) tried by both; 4 is the product's default."
    ),
    pairwise_batch: str = typer.Option(
        "seqs", help="Pairwise batch of B: B rankings' sequences (seqs) or pairs (pairs)."
    ),
    eval_seqs: int = typer.Option(180, help="Training sequences between held-out evaluations."),
    max_seqs: int = typer.Option(12000, help="Give up on a setting after this many (0: never)."),
    max_epochs: int = typer.Option(2),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="torch CPU threads per run (1: steadier timings)."),
    share_prompt: bool = typer.Option(
        True, help="K-way: run each ranking's prompt once for its K samples (the product default)."
    ),
    pad_multiple: int = typer.Option(
        1, help="Pad batches to a multiple of this length (both methods; try 16 on a GPU)."
    ),
) -> None:
    """Print wall time, sequences scored and peak memory of both trainers, and the ratios."""
    if task not in ("lexicon", "marker"):
        raise typer.BadParameter(f"unknown task {task!r}")
    if pairwise_batch not in ("seqs", "pairs"):
        raise typer.BadParameter(f"unknown pairwise batch {pairwise_batch!r}")
    args = {
        "task": task,
        "prompts": prompts,
        "k": k,
        "noise": noise,
        "targets": [float(t) for t in targets.split(",")],
        "pairwise_batch": pairwise_batch,
        "eval_seqs": eval_seqs,
        "max_seqs": max_seqs,
        "max_epochs": max_epochs,
        "seed": seed,
        "device": device,
        "threads": threads,
        "share_prompt": share_prompt,
        "pad_multiple": pad_multiple,
        "context_words": context_words,
        # Prompt + response must fit: truncation would cut the start of longer prompts.
        "max_length": 96 + 3 * context_words,
    }
    grid = [(float(lr), int(b)) for lr in lrs.split(",") for b in batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        shape = {"n_layer": layers, "n_embd": width, "device": device}
        model = model_or_tiny(model, tmp, steps=tiny_steps, seed=seed, **shape)
        all_runs = []
        for method in ("kway", "pairwise"):
            for lr, batch in grid:
                run = _in_subprocess(method, model, {**args, "lr": lr, "batch_size": batch})
                console.print(
                    f"{method:8} lr={lr:g} batch={batch}: reached={run['reached']} "
                    f"acc={run['accuracy']:.3f} seqs={run['passes']} train_s={run['train_s']:.2f}"
                )
                all_runs.append(run)

    # Each method at its best setting: least training time to the highest target reached.
    top = max(args["targets"])

    def cost(r: dict[str, Any]) -> tuple[bool, float, float]:
        hit = next((t for acc, _, t in r["curve"] if acc >= top), None)
        best_acc = max((acc for acc, _, _ in r["curve"]), default=0.0)
        return (hit is None, hit if hit is not None else 0.0, -best_acc)

    runs = [min((r for r in all_runs if r["method"] == m), key=cost) for m in ("kway", "pairwise")]

    grid_table = Table(title=f"grid (pairwise batch = {pairwise_batch}), to accuracy {top:.2f}")
    for column in ("method", "lr", "batch", "seqs/step", "reached", "best acc", "seqs", "train s"):
        grid_table.add_column(column, justify="right")
    for r in all_runs:
        hit = next(((p, t) for acc, p, t in r["curve"] if acc >= top), None)
        grid_table.add_row(
            r["method"] + (" *" if r in runs else ""),
            f"{r['lr']:g}",
            str(r["batch"]),
            str(r["seqs_per_step"]),
            str(hit is not None),
            f"{max((acc for acc, _, _ in r['curve']), default=0.0):.3f}",
            str(hit[0]) if hit else "-",
            f"{hit[1]:.2f}" if hit else "-",
        )
    console.print(grid_table)

    title = f"reward model, {task} task, K={k}: best setting of each (* above), whole runs"
    table = Table(title=title)
    columns = ["method", "lr", "batch", "reached", "held-out acc", "steps", "seqs scored",
               "train s", "ms/seq", "wall s", "peak RSS MB", "peak GPU MB"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            r["method"],
            f"{r['lr']:g}",
            str(r["batch"]),
            str(r["reached"]),
            f"{r['accuracy']:.3f}",
            str(r["steps"]),
            str(r["passes"]),
            f"{r['train_s']:.2f}",
            f"{1000 * r['train_s'] / max(r['passes'], 1):.2f}",
            f"{r['wall_s']:.2f}",
            f"{r['rss_mb']:.0f}",
            f"{r['gpu_mb']:.0f}",
        )
    console.print(table)

    # First evaluation at or above each target: sequences scored and training seconds so far.
    ratios = Table(title="to the same held-out accuracy (pairwise / K-way)")
    for column in ("target", "K-way seqs", "pairwise seqs", "seqs ratio", "K-way s",
                   "pairwise s", "speed ratio"):  # fmt: skip
        ratios.add_column(column, justify="right")
    for target in args["targets"]:
        kway, pairwise = (
            next(((p, t) for acc, p, t in r["curve"] if acc >= target), None) for r in runs
        )
        if kway is None or pairwise is None:
            missing = [name for name, hit in (("K-way", kway), ("pairwise", pairwise)) if not hit]
            why = "neither reached it" if len(missing) == 2 else f"{missing[0]} never reached it"
            ratios.add_row(f"{target:.2f}", *(["-"] * 5), why)
            continue
        ratios.add_row(
            f"{target:.2f}",
            str(kway[0]),
            str(pairwise[0]),
            f"{pairwise[0] / kway[0]:.1f}x",
            f"{kway[1]:.2f}",
            f"{pairwise[1]:.2f}",
            f"{pairwise[1] / kway[1]:.1f}x",
        )
    console.print(ratios)


if __name__ == "__main__":
    app()
