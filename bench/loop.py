"""The closed loop on the tiny model with simulated annotators: does the policy get better?

Per seed: a fresh SQLite database, the demo prompts, the tiny model (built once and shared),
then `--rounds` rounds of: simulated annotators rank every open task over HTTP → round
(reward model + PPO, or DPO) run stage by stage in this process → the new policy measured by
fresh pure samples scored with the simulated preference. Each seed runs in its own process.

Per round it prints the preference score (mean, and the 95 % bootstrap interval of the change
from the previous version, prompts resampled), KL to the reference (the gate's figure), the
reward model's held-out pair accuracy (DPO: the policy's own held-out pair accuracy), the
gate's verdict, and wall seconds per stage. Goal (issue 6): with --seeds 5 --rounds 3 the
interval of the change is above 0 in every round while KL stays under its bound.

The default preference is `sentiment` (positive minus negative words, the tiny-model cousin
of TRL's positive-review PPO example): it leaves room to improve for more rounds than the
benchmark runs, so a round that does not rise is the loop's fault. `length:30` (the demo's)
is reached within two rounds (words 24 ± 12 → 31 ± 6); a third round there can only narrow
the spread, gains 0.01-0.04, and 2 of 5 seeds fell (see issue 6's notes): that measures the
reward model's error near an optimum rather than whether the loop improves the policy.

    .venv/bin/python -m bench.loop --seeds 1 --rounds 2 [--model-dir rankloop-data/models/tiny]
    .venv/bin/python -m bench.loop --seeds 5 --rounds 3 --jobs 2   # the goal; ~25 min on 2 cores
    .venv/bin/python -m bench.loop --seeds 5 --rounds 3 --preference length:30
    .venv/bin/python -m bench.loop --seeds 5 --rounds 3 --type dpo
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)
console = Console(width=160)
ROUND_TYPES = {"ppo": "reward_ppo", "dpo": "dpo"}


def _one_seed(seed: int, rounds: int, round_type: str, preference: str, annotators: int) -> None:
    """Runs inside a child process whose RANKLOOP_* environment points at a fresh data dir."""
    from app import migrate
    from app.config import get_settings
    from app.db import session_scope
    from app.simulation.loop import (
        TINY_DPO_ROUND,
        TINY_ROUND,
        LoopSettings,
        loop_project,
        run_loop,
    )

    migrate.upgrade("head")
    with session_scope() as session:
        project_id = loop_project(session, base_model=get_settings().default_base_model)
    settings = LoopSettings(
        rounds=rounds,
        annotators=annotators,
        preference=preference,
        seed=seed,
        round_type=round_type,
        round_config=dict(TINY_DPO_ROUND if round_type == "dpo" else TINY_ROUND),
    )
    reports = run_loop(project_id, settings)
    rows = []
    for r in reports:
        row = asdict(r)
        row["score_mean"] = r.score.mean
        row.pop("score")
        rows.append(row)
    print("RESULT " + json.dumps(rows, default=str))


def _run_seed(
    seed: int, rounds: int, round_type: str, preference: str, annotators: int, model_dir: Path
) -> list[dict[str, Any]]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"rankloop-bench-loop-{seed}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    env.update(
        RANKLOOP_DATA_DIR=str(data_dir),
        RANKLOOP_DEFAULT_BASE_MODEL=str(model_dir),
        HF_HUB_OFFLINE="1",
    )
    code = (
        "import sys; from bench.loop import _one_seed; "
        f"_one_seed({seed}, {rounds}, {round_type!r}, {preference!r}, {annotators})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return list(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


@app.command()
def main(
    seeds: int = typer.Option(1, help="Independent runs (fresh database each)."),
    rounds: int = typer.Option(2, help="Rounds per run."),
    type: str = typer.Option("ppo", help="ppo (reward model + PPO) or dpo."),
    preference: str = typer.Option(
        "sentiment", help="The simulated annotators' preference (see the module docstring)."
    ),
    annotators: int = typer.Option(3, help="Simulated annotators."),
    model_dir: Path | None = typer.Option(
        None, help="An existing tiny model directory (default: build one, about a minute)."
    ),
    jobs: int = typer.Option(
        1, help="Seeds run at once (each uses one core; 1 keeps stage times comparable)."
    ),
) -> None:
    if type not in ROUND_TYPES:
        raise typer.BadParameter(f"--type must be one of {', '.join(ROUND_TYPES)}")
    if model_dir is None:
        from worker.training.tiny_model import make_tiny_model

        model_dir = Path(tempfile.mkdtemp(prefix="rankloop-bench-tiny-")) / "tiny"
        with console.status("Building the tiny model…"):
            make_tiny_model(model_dir)
    table = Table(
        "seed", "round", "state", "rankings", "score", "change 95% CI", "KL", "RM acc",
        "gate", "seconds per stage",
    )  # fmt: skip
    rising_everywhere = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each seed is a subprocess
        results = list(
            pool.map(
                lambda seed: _run_seed(
                    seed, rounds, ROUND_TYPES[type], preference, annotators, model_dir
                ),
                range(seeds),
            )
        )
    for seed, rows in enumerate(results):
        rising = True
        for row in rows:
            interval = row["change_interval"]
            if row["number"] > 0:
                rising = rising and interval is not None and interval[0] > 0
            gate = row["gate"]
            table.add_row(
                str(seed),
                str(row["number"]),
                row["state"],
                str(row["rankings"]),
                _fmt(row["score_mean"], "+.3f"),
                "-" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]",
                _fmt(row["kl"], ".2f"),
                _fmt(row["rm_accuracy"], ".2f"),
                "-" if not gate else ("pass" if gate.get("passed") else "reject"),
                ", ".join(f"{k} {v:.0f}" for k, v in row["stage_seconds"].items()),
            )
        rising_everywhere += rising
    console.print(table)
    console.print(
        f"Preference {preference!r}, {type}: the score rose (interval of the change above 0) "
        f"in every round in {rising_everywhere} of {seeds} seeds."
    )


if __name__ == "__main__":
    app()
