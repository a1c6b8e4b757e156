"""The policy stage alone, scored by the TRUE preference: why do RLOO and GRPO trail PPO?

bench/loop.py --suite mixes the reward model's error into every figure and takes 20-40 minutes
a run (issue 24: on keywords_length PPO gained +1.94σ in 3 rounds, RLOO +0.30σ, GRPO +0.20σ).
Here only round 1's policy stage runs, in a process of its own (one torch thread):
train_ppo, train_rloo or train_grpo on the tiny model against the family's preference itself,
normalised to mean 0 / std 1 on the base's own samples as a round's reward model is (the
ScoreFn contract, worker/training/ppo.py). Each family of app/simulation/preferences.FAMILIES
draws its preference and splits the prompt pool per seed exactly as the suite does
(`bench.loop._suite_jobs`), and the trainer's config is the one a round started with no
settings gets: the round form's defaults sized for the suite's project (the Project columns'
defaults: 4 samples per prompt, temperature 0.9, 64 tokens) by app.rounds.sizing, turned into
PPOConfig / RLOOConfig / GRPOConfig by worker/jobs/round_trainers.py. With the suite's 164
project prompts that is 492 rollouts: 31 updates of 16 prompts × 1 (PPO) or 4 prompts × 4.

Per run: the gain on the held-out prompts (`--measure-samples` pure samples each at the loop's
measuring temperature, the same seed as the base's) in σ of the base's samples, as the
suite states it; the KL of those samples to the reference; and the stage's diagnostics, mean
over its updates: the share of groups whose K true scores are all equal (no gradient from
the score), mean |advantage|, the mean within-group std of the normalised score beside the
batch's std, the share of rollouts that ended (EOS), the gradient norm before clipping.

Variants (`--variants`, `--list-variants`) change one setting of a product default, to test
a candidate cause; a variant only counts if it helps across families and seeds.

    .venv/bin/python -m bench.policy_stage --seeds 2 --jobs 2   # ppo, rloo, grpo × 6 families
    .venv/bin/python -m bench.policy_stage --seeds 2 --jobs 2 --variants rloo_whiten,grpo_dr
    .venv/bin/python -m bench.policy_stage --seeds 1 --families length --variants ppo,rloo
    .venv/bin/python -m bench.policy_stage --list-variants
    .venv/bin/python -m bench.policy_stage --seeds 2 --out /tmp/runs.json   # keep every run
    .venv/bin/python -m bench.policy_stage --seeds 2 --reward-error 1   # a reward model's error
    .venv/bin/python -m bench.policy_stage --seeds 1 --train-seeds 4 --families keywords_length
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process

if TYPE_CHECKING:
    from torch import Tensor

    from worker.training.prompts import Prompt

app = typer.Typer(add_completion=False)
console = Console(width=200)
PRELOAD = ("torch", "transformers", "peft", "worker.training.ppo")
ROUND_TYPES = {"ppo": "reward_ppo", "rloo": "reward_rloo", "grpo": "reward_grpo"}


@dataclass(frozen=True)
class Variant:
    """One policy stage: an algorithm with the product's defaults, less what it changes."""

    algorithm: str
    """ppo, rloo or grpo."""
    what: str
    settings: dict[str, Any] = field(default_factory=dict)
    """Round settings (the round form's, before sizing: steps follow a changed batch)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Trainer config fields, set after the round's settings became the config."""
    whiten: bool = False
    """Critic-free: the advantages whitened over the whole batch, as PPO's (TRL's RLOO
    `normalize_advantages`)."""


VARIANTS = {
    "ppo": Variant("ppo", "PPO, product defaults"),
    "rloo": Variant("rloo", "RLOO, product defaults"),
    "grpo": Variant("grpo", "GRPO, product defaults"),
    "rloo_whiten": Variant("rloo", "RLOO, advantages whitened over the batch", whiten=True),
    "grpo_whiten": Variant("grpo", "GRPO, advantages whitened over the batch", whiten=True),
    "grpo_dr": Variant("grpo", "Dr. GRPO (no std division, constant length divisor)",
                       settings={"dr_grpo": True}),
    "rloo_8x4": Variant("rloo", "RLOO, 8 prompts × 4 per update (half the updates)",
                        settings={"batch_size": 8}),
    "rloo_16x4": Variant("rloo", "RLOO, 16 prompts × 4 per update (a quarter of the updates)",
                         settings={"batch_size": 16}),
    "rloo_kl_loss": Variant("rloo", "RLOO, k3 KL in the loss", settings={"kl_in": "loss"}),
    "rloo_no_eos": Variant("rloo", "RLOO, no missing-EOS penalty",
                           config={"missing_eos_penalty": None}),
    "rloo_lr1e3": Variant("rloo", "RLOO, learning rate 1e-3", settings={"learning_rate": 1e-3}),
    "ppo_no_whiten": Variant("ppo", "PPO, advantages not whitened",
                             config={"whiten_advantages": False}),
}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What every run of one seed shares: the suite's prompt split and the base's samples."""

    seed: int
    train_prompts: list[Prompt]
    measure_prompts: list[str]
    project_prompts: int
    specs: dict[str, str]
    """Family -> the preference drawn for this seed."""


def _plans(families: list[str], seeds: int, heldout: int, measure_samples: int) -> list[Plan]:
    """The suite's draws (bench.loop._suite_jobs), and round 1's training prompts: the
    project's prompts less the gate's held-out quarter (app.rounds.sizing)."""
    from app.rounds.sizing import eval_prompt_count
    from bench.loop import _suite_jobs

    jobs = _suite_jobs(
        ",".join(families), seeds, 1, "reward_ppo", 3, 0.5, heldout, measure_samples
    )  # fmt: skip
    plans = []
    for seed in range(seeds):
        of_seed = [j for j in jobs if j.seed == seed]
        project: list[Prompt] = [str(p) for p in of_seed[0].project_prompts]
        order = random.Random(f"gate:{seed}").sample(project, len(project))
        plans.append(
            Plan(
                seed=seed,
                train_prompts=order[eval_prompt_count(len(project)) :],
                measure_prompts=[str(p) for p in of_seed[0].measure_prompts],
                project_prompts=len(project),
                specs={str(j.family): j.preference for j in of_seed},
            )
        )
    return plans


def _trainer_config(variant: Variant, *, seed: int, prompts: int, rankings: int) -> Any:
    """The trainer config a round of this type gets with no settings on the suite's project,
    sized as app.rounds.sizing sizes it, then the variant's changes."""
    from app.models import Project
    from app.rounds import registry
    from app.rounds.sizing import apply_sizing, size_round
    from worker.jobs.round_trainers import grpo_config, ppo_config, rloo_config

    project = _default_project(Project)
    round_type = ROUND_TYPES[variant.algorithm]
    form = registry.get(round_type).config
    raw = form().model_dump()
    raw["seed"] = seed
    raw[variant.algorithm].update(variant.settings)
    sized = size_round(
        project, round_type=round_type, config=raw, prompts=prompts, rankings=rankings
    )
    round_config = form.model_validate(apply_sizing(raw, sized))
    makers: dict[str, Callable[..., Any]] = {
        "ppo": ppo_config, "rloo": rloo_config, "grpo": grpo_config
    }  # fmt: skip
    make = makers[variant.algorithm]
    return replace(make(round_config, stop_strings=project.stop_strings), **variant.config)


def _default_project(project_class: Any) -> Any:
    """A Project holding its columns' defaults: what a new project gets from the form."""
    defaults = {
        c.name: c.default.arg
        for c in project_class.__table__.c
        if c.default is not None and not callable(c.default.arg)
    }
    return project_class(**defaults)


def _base_samples(
    model_dir: str, plan: Plan, rollout: dict[str, Any], measure: dict[str, Any]
) -> dict[str, list[str]]:
    """The base's samples (in a process of its own): K per training prompt at the rollout's
    temperature, to normalise the scores on, and the held-out measurement samples."""
    import torch

    from worker.training.evaluation import sample_once
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device="cpu")
    ensure_pad_token(tokenizer, model)
    norm = [p for p in plan.train_prompts for _ in range(rollout["group_size"])]
    normalising = sample_once(
        model, tokenizer, norm, temperature=rollout["temperature"],
        max_new_tokens=rollout["max_new_tokens"], seed=plan.seed + 20_000, batch_size=32,
    )  # fmt: skip
    return {
        "normalising": [s.text for s in normalising],
        "measured": [s.text for s in _measure(model, tokenizer, plan, measure)[1]],
    }


def _measure(
    model: Any, tokenizer: Any, plan: Plan, measure: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    """Pure samples on the held-out prompts, as bench/loop.py measures a version (the same
    seed for every version): (prompts, samples)."""
    from worker.training.evaluation import sample_once

    repeated = [p for p in plan.measure_prompts for _ in range(measure["samples"])]
    samples = sample_once(
        model, tokenizer, repeated, temperature=measure["temperature"],
        max_new_tokens=measure["max_new_tokens"], seed=plan.seed + 10_000, batch_size=32,
    )  # fmt: skip
    return repeated, samples


class TrueScore:
    """The preference as a round's reward: (score - mean) / std of the base's samples; keeps
    each call's raw scores (one call per update, K consecutive rows a prompt's group).

    `error` > 0 adds a reward model's kind of mistake: a spurious preference (random weights,
    seeded by `error_seed`, on the words of the tiny model's answers) at `error` times the true
    score's spread, the sum normalised again; the gain is still measured on the true score.
    """

    def __init__(
        self, spec: str, normalising: list[str], *, error: float = 0.0, error_seed: int = 0
    ) -> None:
        from app.simulation.preferences import load_preference

        self.preference = load_preference(spec)
        self.error = error
        self.weights = _spurious_weights(error_seed) if error else {}
        raw = [self.preference(t) for t in normalising]
        self.mean = statistics.fmean(raw)
        self.std = statistics.pstdev(raw) or 1.0
        spurious = [self._spurious(t) for t in normalising]
        self.spurious_mean = statistics.fmean(spurious)
        self.spurious_std = statistics.pstdev(spurious) or 1.0
        self.reward_std = statistics.pstdev(self._reward(t) for t in normalising) or 1.0
        self.calls: list[list[float]] = []

    def _spurious(self, text: str) -> float:
        from app.simulation.preferences import _answer_words

        return sum(self.weights.get(w, 0.0) for w in _answer_words(text))

    def _reward(self, text: str) -> float:
        true = (self.preference(text) - self.mean) / self.std
        if not self.error:
            return true
        spurious = (self._spurious(text) - self.spurious_mean) / self.spurious_std
        return true + self.error * spurious

    def __call__(self, prompts: list[Any], responses: list[str]) -> list[float]:
        self.calls.append([self.preference(t) for t in responses])
        return [self._reward(t) / self.reward_std for t in responses]

    def group_figures(self, k: int) -> dict[str, float]:
        """Mean over updates: share of groups whose K raw scores are all equal, the mean
        within-group std and the batch's std of the normalised score."""
        tied, group_std, batch_std = [], [], []
        for raw in self.calls:
            z = [(x - self.mean) / self.std for x in raw]
            groups = [z[i : i + k] for i in range(0, len(z), k)]
            if k > 1:
                tied.append(statistics.fmean(float(len(set(g)) == 1) for g in groups))
                group_std.append(statistics.fmean(statistics.stdev(g) for g in groups))
            batch_std.append(statistics.stdev(z))
        return {
            "tied_groups": statistics.fmean(tied) if tied else float("nan"),
            "group_std": statistics.fmean(group_std) if group_std else float("nan"),
            "batch_std": statistics.fmean(batch_std),
        }


def _spurious_weights(seed: int) -> dict[str, float]:
    """A standard normal weight for each word of the tiny model's answer vocabulary."""
    from app.simulation.preferences import answer_vocabulary
    from rankloop.simulation import corpus_answers

    rng = random.Random(f"spurious:{seed}")
    return {w: rng.gauss(0.0, 1.0) for w in answer_vocabulary(corpus_answers())}


def _run(
    name: str,
    family: str,
    plan: Plan,
    base: dict[str, list[str]],
    args: dict[str, Any],
    repeat: int = 0,
) -> dict[str, Any]:
    """One policy stage, its measurement and its diagnostics (in a process of its own);
    `repeat` > 0 trains with another seed on the same preference and prompts."""
    import torch

    from worker.training.evaluation import mean_kl_to_reference
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    variant = VARIANTS[name]
    config = _trainer_config(
        variant,
        seed=plan.seed + 1000 * repeat,
        prompts=plan.project_prompts,
        rankings=args["rankings"],
    )
    k = getattr(config, "group_size", 1)
    score = TrueScore(
        plan.specs[family], base["normalising"], error=args["error"], error_seed=plan.seed
    )
    tokenizer = load_tokenizer(args["model_dir"])
    model = load_causal_lm(args["model_dir"], device="cpu")
    ensure_pad_token(tokenizer, model)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        result = _train(variant, model, tokenizer, plan.train_prompts, score, config, out_dir)
    seconds = time.perf_counter() - started
    repeated, samples = _measure(result.model, tokenizer, plan, args["measure"])
    texts = [s.text for s in samples]
    kl = mean_kl_to_reference(
        result.model, tokenizer, repeated, samples, temperature=args["measure"]["temperature"]
    )
    steps = result.metrics_per_step

    def mean(key: str) -> float:
        found = [m[key] for m in steps if key in m]
        return statistics.fmean(found) if found else float("nan")

    before = [score.preference(t) for t in base["measured"]]
    after = [score.preference(t) for t in texts]
    sigma = statistics.stdev(before) or float("nan")
    return {
        "variant": name,
        "family": family,
        "seed": plan.seed,
        "repeat": repeat,
        "spec": plan.specs[family],
        "gain": (statistics.fmean(after) - statistics.fmean(before)) / sigma,
        "kl": kl,
        "train_kl": statistics.fmean(m["kl"] for m in steps[-5:]),
        **score.group_figures(k),
        "advantage_abs": mean("advantage_abs"),
        "eos_share": mean("eos_share"),
        "grad_norm": mean("grad_norm"),
        "clipfrac": mean("clipfrac"),
        "steps": len(steps),
        "rollouts": len(steps) * len(score.calls[0]),
        "seconds": seconds,
    }


def _train(
    variant: Variant,
    model: Any,
    tokenizer: Any,
    prompts: list[Prompt],
    score: TrueScore,
    config: Any,
    out_dir: str,
) -> Any:
    """The product's trainer; for a whitening variant, the critic-free loop with its
    advantages whitened over the batch (losses.masked_whiten, PPO's whitening)."""
    from worker.training.critic_free import train_critic_free
    from worker.training.grpo import train_grpo
    from worker.training.losses import (
        LossAggregation,
        group_advantages,
        masked_whiten,
        rloo_advantages,
    )
    from worker.training.ppo import train_ppo
    from worker.training.rloo import train_rloo

    if not variant.whiten:
        trainers: dict[str, Callable[..., Any]] = {
            "ppo": train_ppo, "rloo": train_rloo, "grpo": train_grpo
        }  # fmt: skip
        return trainers[variant.algorithm](
            model, tokenizer, prompts, score, config, out_dir=Path(out_dir)
        )
    aggregation: LossAggregation
    if variant.algorithm == "rloo":
        advantages: Callable[[Tensor], Tensor] = rloo_advantages
        aggregation = "token"  # rloo.py's
    elif variant.algorithm == "grpo" and not config.dr_grpo:
        advantages, aggregation = group_advantages, "sequence"  # grpo.py's
    else:
        raise ValueError(f"no whitening variant of {variant.algorithm}")

    def whitened(rewards: Tensor) -> Tensor:
        found = advantages(rewards)  # (N, K)
        return masked_whiten(found, found.new_ones(found.shape))

    return train_critic_free(
        model, tokenizer, prompts, score, config, algorithm=variant.algorithm.upper(),
        advantages_fn=whitened, aggregation=aggregation, out_dir=Path(out_dir),
    )  # fmt: skip


def _fmt(value: float, spec: str = "+.2f") -> str:
    return "-" if value != value else format(value, spec)  # NaN: not applicable


def _print(runs: list[dict[str, Any]], variants: list[str], families: list[str]) -> None:
    for family in families:
        table = Table(
            "variant", "gain σ (mean)", "per seed", "KL", "train KL", "tied groups", "|A|",
            "group std", "batch std", "eos", "grad norm", "clipfrac", "s",
            title=f"{family}: policy stage against the true preference (mean over seeds)",
        )  # fmt: skip
        for name in variants:
            mine = sorted(
                (r for r in runs if r["variant"] == name and r["family"] == family),
                key=lambda r: (r["seed"], r.get("repeat", 0)),
            )
            if not mine:
                continue

            def avg(key: str, of: list[dict[str, Any]] = mine) -> float:
                return statistics.fmean(r[key] for r in of)

            table.add_row(
                name, _fmt(avg("gain")), " ".join(f"{r['gain']:+.2f}" for r in mine),
                _fmt(avg("kl"), ".2f"), _fmt(avg("train_kl"), ".2f"),
                _fmt(avg("tied_groups"), ".2f"), _fmt(avg("advantage_abs"), ".2f"),
                _fmt(avg("group_std"), ".2f"), _fmt(avg("batch_std"), ".2f"),
                _fmt(avg("eos_share"), ".2f"), _fmt(avg("grad_norm"), ".2f"),
                _fmt(avg("clipfrac"), ".3f"), f"{avg('seconds'):.0f}",
            )  # fmt: skip
        console.print(table)
    summary = Table("variant", *families, "mean", title="Gain over base (σ), mean over seeds")
    for name in variants:
        row, gains = [name], []
        for family in families:
            found = [r["gain"] for r in runs if r["variant"] == name and r["family"] == family]
            row.append(_fmt(statistics.fmean(found)) if found else "-")
            gains += found
        row.append(_fmt(statistics.fmean(gains)) if gains else "-")
        summary.add_row(*row)
    console.print(summary)
    for line in sorted({f"seed {r['seed']}: {r['family']} = {r['spec']}" for r in runs}):
        console.print(line)


@app.command()
def main(
    variants: str = typer.Option("ppo,rloo,grpo", help="Comma-separated (--list-variants)."),
    families: str | None = typer.Option(None, help="Comma-separated (default: all six)."),
    seeds: int = typer.Option(2, min=1, help="Seeds 0..N-1: each draws its preferences."),
    train_seeds: int = typer.Option(
        1, min=1, help="Training seeds per preference (the spread of one stage's outcome)."
    ),
    jobs: int = typer.Option(1, min=1, help="Runs at once (each one process, one thread)."),
    model_dir: Path = typer.Option(
        Path("/tmp/rankloop-tiny"), help="The tiny model (`rankloop models make-tiny DIR`)."
    ),
    heldout_prompts: int = typer.Option(60, help="As bench/loop.py --suite's.", min=1),
    measure_samples: int = typer.Option(6, help="As bench/loop.py --suite's.", min=1),
    rankings: int | None = typer.Option(
        None,
        help="Rankings the round is sized on (default: one per project prompt, as "
        "round 1 of the suite).",
    ),
    reward_error: float = typer.Option(
        0.0,
        min=0.0,
        help="Add a spurious word preference at this times the true score's "
        "spread (a reward model's kind of error; the gain stays on the true score).",
    ),
    out: Path | None = typer.Option(None, help="Write every run's figures here (JSON)."),
    list_variants: bool = typer.Option(False, help="Print the variants and stop."),
) -> None:
    """Print the policy stage's gain and diagnostics per family × variant."""
    from app.simulation.preferences import FAMILIES
    from rankloop.simulation import LoopSettings

    if list_variants:
        for name, variant in VARIANTS.items():
            console.print(f"{name:16} {variant.what}")
        return
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    if not chosen or set(chosen) - set(VARIANTS):
        raise typer.BadParameter(f"--variants: a subset of {', '.join(VARIANTS)}")
    fams = [f.strip() for f in families.split(",")] if families else list(FAMILIES)
    if not (model_dir / "config.json").exists():
        raise typer.BadParameter(f"no model in {model_dir}: rankloop models make-tiny {model_dir}")
    plans = _plans(fams, seeds, heldout_prompts, measure_samples)
    loop = LoopSettings()
    measure = {
        "samples": measure_samples,
        "temperature": loop.temperature,
        "max_new_tokens": loop.max_new_tokens,
    }
    rollout_config = _trainer_config(
        VARIANTS["rloo"], seed=0, prompts=plans[0].project_prompts,
        rankings=rankings or plans[0].project_prompts,
    )  # fmt: skip
    rollout = {
        "group_size": rollout_config.group_size,
        "temperature": rollout_config.temperature,
        "max_new_tokens": rollout_config.max_new_tokens,
    }
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        bases = list(
            pool.map(
                lambda plan: run_in_process(
                    _base_samples, str(model_dir), plan, rollout, measure, preload=PRELOAD
                ),
                plans,
            )
        )
        work = [
            (name, family, plan, base, repeat)
            for plan, base in zip(plans, bases, strict=True)
            for family in fams
            for repeat in range(train_seeds)
            for name in chosen
        ]
        args = {
            "model_dir": str(model_dir),
            "measure": measure,
            "rankings": rankings or plans[0].project_prompts,
            "error": reward_error,
        }

        def one(item: tuple[str, str, Plan, dict[str, list[str]], int]) -> dict[str, Any]:
            name, family, plan, base, repeat = item
            run: dict[str, Any] = run_in_process(
                _run, name, family, plan, base, args, repeat, preload=PRELOAD
            )
            if out is not None:  # each run as it ends: a failed run keeps the others
                with out.with_suffix(".jsonl").open("a") as lines:
                    lines.write(json.dumps(run) + "\n")
            console.print(
                f"  {name} {family} seed {plan.seed}.{repeat}: {run['gain']:+.2f}σ, "
                f"KL {run['kl']:.2f}, {run['steps']} updates ({run['rollouts']} rollouts), "
                f"{run['seconds']:.0f} s"
            )
            return run

        runs = list(pool.map(one, work))
    if out is not None:
        out.write_text(json.dumps(runs, indent=1))
    console.print(
        f"model {model_dir}; {len(plans[0].train_prompts)} training prompts, "
        f"{len(plans[0].measure_prompts)} held-out × {measure_samples} samples at temperature "
        f"{measure['temperature']}; rollouts at temperature {rollout['temperature']}, "
        f"{rollout['max_new_tokens']} tokens; reward error {reward_error}; one torch thread "
        "per run"
    )
    _print(runs, chosen, fams)


if __name__ == "__main__":
    app()
