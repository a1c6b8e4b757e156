"""RLAIF: does a simulated judge stretch a quarter of the human rankings as far as all of them?

The preference families of bench/loop.py --suite, drawn the same way (seeded per family and
seed, the same held-out prompts), each run as arms that differ only in who ranks:
  (a) all human: the simulated people rank every open task each round (bench/loop.py's loop);
  (b) 25 % human: the people submit at most ⌈¼ · required slots of all tasks so far⌉ minus their
      rankings so far each round (LoopSettings.human_share, run_annotators' max_tasks), i.e. a
      quarter of arm (a)'s rankings, on the tasks the queue hands them first; the rest stay open;
  (c) 25 % human + judge: as (b), but first each pass a simulated judge (worker/judging/
      simulated.py: right on the set share of the true preference's pairs) ranks every open task
      (overlap 'all'; before the people, since a task they finish closes), so it shares the
      people's tasks; the ratings refit after their pass measures it against them and checks
      its floors at the form's defaults: the relative floor 0.5 (paused when its reliability
      relative to a typical person, judge-person beside person-person agreement chance-
      corrected, is significantly below half a person; the simulated people agree with the
      true preference on ~0.62 of pairs, so an absolute share, ~0.55 for any judge, could not
      tell judges apart), no absolute floor, 30 pairs. A round's snapshot takes the judge's
      rankings only while it passes its floors measured (an unmeasured or a paused-by-the-floor
      judge's rankings, earlier ones included, train nothing). Rounds train on both, the
      judge's comparisons at judge_weight 1 (counted like a person's: the question is whether
      its rankings can stand in for people's, not how to discount them).
The project and rounds are the product's defaults (bench/loop.py's SUITE_PROJECT). The gain is
bench/loop.py's: the current version after the last round over the base, in σ of the base's
samples, on held-out prompts. For (c) it prints the judge's measured agreement with people
(pairwise, with the consensus), the round in whose annotation pass the floor paused it, and the
gain as a share of arm (a)'s. A round short of data (the reward model no better than chance
on held-out rankings) ends `needs_more_data` and trains nothing: with few prompts, arm (b)
does. Goals (issue 23): a 0.8 judge's gain ≥ 80 % of all-human; a 0.6 judge paused before
its arm's gain (per round, the current version's) falls below arm (b)'s.

Then judge throughput, rankings per second: the local tiny model (hf backend, logprob) and the
'openai' backend against a loopback endpoint wrapping the simulated judge (bench/_rlaif_server.py).

    .venv/bin/python -m bench.rlaif --quick                       # smoke: 1 family, 1 round
    .venv/bin/python -m bench.rlaif --families length --seeds 1 --rounds 2 --agreements 0.6,0.8
    .venv/bin/python -m bench.rlaif --seeds 5 --rounds 3 --jobs 2  # the issue's benchmark
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from bench.loop import (
    SUITE_PROJECT,
    Job,
    _fmt,
    _seed_outcome,
    _suite_jobs,
    _versions,
    console,
    run_in_child,
)

app = typer.Typer(add_completion=False)
HUMAN_SHARE = 0.25
JUDGE_WEIGHT = 1.0


@dataclass
class Arm:
    """Who ranks: people's share of a full pass, and the judge's agreement (None: no judge)."""

    human_share: float
    agreement: float | None = None

    @property
    def name(self) -> str:
        people = "all human" if self.human_share >= 1 else f"{self.human_share:.0%} human"
        return people if self.agreement is None else f"{people} + judge {self.agreement:g}"


@dataclass
class ArmJob:
    """One family × seed × arm, passed to its child process as JSON."""

    job: Job
    arm: Arm


def _one_arm(job: Job, arm: Arm) -> None:
    """Runs inside a child process whose RANKLOOP_* environment points at a fresh data dir."""
    from sqlalchemy import select

    from app import migrate
    from app.config import get_settings
    from app.db import session_scope
    from app.judges.measurement import judge_measures
    from app.models import Judge
    from rankloop.simulation import LoopSettings, RoundReport, loop_project, run_loop

    migrate.upgrade("head")
    with session_scope() as session:
        project_id = loop_project(
            session,
            base_model=get_settings().default_base_model,
            settings=SUITE_PROJECT,
            prompts=list(job.project_prompts),
        )
    settings = LoopSettings(
        rounds=job.rounds,
        annotators=job.annotators,
        preference=job.preference,
        noise=job.noise,
        seed=job.seed,
        round_type=job.round_type,
        round_config={},  # the round form's defaults, as in bench/loop.py --suite
        measure_prompts=list(job.measure_prompts),
        measure_samples=job.measure_samples,
        judge=None if arm.agreement is None else f"simulated:{arm.agreement}",
        human_share=arm.human_share,
        judge_weight=None if arm.agreement is None else JUDGE_WEIGHT,
    )
    judged: list[dict[str, Any]] = []

    def on_round(report: RoundReport) -> None:
        """After each round: the judge's state and its agreement with people so far."""
        if arm.agreement is None or report.number == 0:
            return
        with session_scope(readonly=True) as session:
            judge = session.scalars(select(Judge).where(Judge.project_id == project_id)).one()
            agreement = judge_measures(session, judge_id=judge.id).agreement
            judged.append(
                {
                    "round": report.number,
                    "state": judge.state,
                    "reason": judge.paused_reason,
                    "agreement": agreement.value,
                    "pairs": agreement.n,
                }
            )

    reports = run_loop(project_id, settings, on_round=on_round)
    rows = []
    for r in reports:
        row = asdict(r)
        row.pop("score")
        row["version"] = r.score.version_number
        row["score_mean"] = r.score.mean
        row["score_std"] = r.score.sample_std
        rows.append(row)
    result = {"rounds": rows, "versions": _versions(project_id), "judge": judged}
    print("RESULT " + json.dumps(result, default=str))


def _child() -> None:
    payload = json.loads(sys.argv[1])
    _one_arm(Job(**payload["job"]), Arm(**payload["arm"]))


def _run_arm(item: ArmJob, model_dir: Path, save: Path | None = None) -> dict[str, Any]:
    """One arm in its own process and data directory (as bench/loop.py runs a seed); its
    result also written under `save` as soon as it is in (a long run's partial figures)."""
    result = run_in_child(
        "bench.rlaif",
        json.dumps({"job": asdict(item.job), "arm": asdict(item.arm)}),
        model_dir,
        label=f"{item.job.family} seed {item.job.seed} {item.arm.name}",
        prefix=f"rankloop-bench-rlaif-{item.job.seed}-",
    )
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        name = f"{item.job.family}-{item.job.seed}-{item.arm.name.replace(' ', '_')}"
        (save / f"{name}.json").write_text(json.dumps(result, default=str))
    return result


# Figures


def round_gains(result: dict[str, Any]) -> list[float | None]:
    """Per round (1..n): the current version's score over the base, in σ of the base's
    samples (a round whose version was not promoted leaves its parent current)."""
    rows = result["rounds"]
    base = rows[0]
    sigma = base["score_std"] if base["score_std"] and base["score_std"] > 0 else None
    current, gains = base["score_mean"], []
    for row in rows[1:]:
        if row["state"] == "done":
            current = row["score_mean"]
        gains.append(None if sigma is None else (current - base["score_mean"]) / sigma)
    return gains


def paused_round(result: dict[str, Any]) -> int | None:
    """The round in whose annotation pass the judge was paused (None: never)."""
    return next((r["round"] for r in result["judge"] if r["state"] == "paused"), None)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(known) if known else None


def _print(arms: list[Arm], planned: list[ArmJob], results: list[dict[str, Any]]) -> None:
    by_family: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for item, result in zip(planned, results, strict=True):
        arms_of = by_family.setdefault(str(item.job.family), {})
        arms_of.setdefault(item.arm.name, []).append(result)
    for family, runs in by_family.items():
        human = _mean([_seed_outcome(r).gain_over_base for r in runs[arms[0].name]])
        quarter_rounds = [round_gains(r) for r in runs[arms[1].name]]
        table = Table(
            "arm", "seeds", "rankings (last pass)", "round states", "gain over base (σ) per round",
            "gain after last round (σ)", "vs all human", "judge agreement with people",
            "judge paused in round", "goal",
            title=f"{family}: RLAIF arms (reward model + PPO, product defaults)",
        )  # fmt: skip
        for arm in arms:
            results_of = runs[arm.name]
            gain = _mean([_seed_outcome(r).gain_over_base for r in results_of])
            per_round = [round_gains(r) for r in results_of]
            by_round = [_mean(list(col)) for col in zip(*per_round, strict=True)]
            judged = [r["judge"][-1] for r in results_of if r["judge"]]
            paused = [paused_round(r) for r in results_of]
            goal = "-"
            if arm.agreement is not None and arm.agreement >= 0.8 and human:
                goal = "met" if gain is not None and gain >= 0.8 * human else "missed"
            elif arm.agreement is not None and arm.agreement <= 0.6:
                goal = _pause_goal(results_of, quarter_rounds)
            table.add_row(
                arm.name,
                str(len(results_of)),
                ", ".join(str(r["rounds"][-1]["rankings"]) for r in results_of),
                "; ".join(" → ".join(row["state"] for row in r["rounds"][1:]) for r in results_of),
                " → ".join(_fmt(g, "+.2f") for g in by_round),
                _fmt(gain, "+.2f"),
                "-" if gain is None or not human else f"{gain / human:.0%}",
                ", ".join(f"{_fmt(j['agreement'], '.2f')} ({j['pairs']} pairs)" for j in judged)
                or "-",
                "-" if arm.agreement is None else ", ".join(str(p or "never") for p in paused),
                goal,
            )
        console.print(table)
        for arm in arms:
            for r in runs[arm.name]:
                reasons = {j["reason"] for j in r["judge"] if j["reason"]}
                for reason in reasons:
                    console.print(f"  {arm.name}: paused: {reason}")


def _pause_goal(results: list[dict[str, Any]], quarter: list[list[float | None]]) -> str:
    """Met when, in every seed, the judge was paused and no round's gain before or at the pause
    fell below the 25 %-human arm's in the same seed and round."""
    met = 0
    for result, alone in zip(results, quarter, strict=False):
        stop = paused_round(result)
        if stop is None:
            continue
        gains = round_gains(result)[:stop]
        below = any(
            g is not None and a is not None and g < a for g, a in zip(gains, alone, strict=False)
        )
        met += not below
    return f"{'met' if met == len(results) else 'missed'} ({met} of {len(results)})"


# Throughput


def throughput(model_dir: Path, preference: str, items: int) -> dict[str, float]:
    """Rankings per second: the local tiny judge (hf, logprob) and the 'openai' backend
    against the loopback endpoint wrapping the simulated judge (listwise)."""
    from bench._rlaif_server import serve
    from rankloop.simulation import corpus_answers, corpus_questions
    from worker.judging import make_judge
    from worker.judging.simulated import SimulatedJudge
    from worker.judging.spec import JudgeInput, JudgeSpec
    from worker.judging.throughput import measure
    from worker.threads import configure_torch_threads

    questions, answers = corpus_questions(items), corpus_answers()
    batch = [
        JudgeInput(
            prompt=q,
            samples=[(j, answers[(i * 4 + j) % len(answers)]) for j in range(4)],
            guidelines="Prefer correct, complete answers.",
        )
        for i, q in enumerate(questions)
    ]
    local = JudgeSpec(
        backend="hf", model=str(model_dir), method="logprob", prompt_template="", principles=[]
    )
    configure_torch_threads(threads=1)  # as the loop runs the tiny model (LoopSettings)
    judge = make_judge(local)
    judge.judge(batch[0])  # warm-up: the first call pays for loading and allocation
    figures = {"hf (tiny model, logprob, 4 answers)": measure(judge, batch)}
    simulated = JudgeSpec(
        backend="simulated",
        model="simulated",
        method="listwise",
        prompt_template="",
        principles=[],
        options={"preference": preference, "agreement": 0.8, "seed": 0},
    )
    with serve(SimulatedJudge.from_spec(simulated)) as url:
        endpoint = JudgeSpec(
            backend="openai",
            model="simulated",
            method="listwise",
            prompt_template="",
            principles=[],
            base_url=url,
            api_key="bench-key",
        )
        figures["openai (loopback endpoint, listwise, 4 answers)"] = measure(
            make_judge(endpoint), batch
        )
    return figures


@app.command()
def main(
    families: str | None = typer.Option(
        None, help="Comma-separated preference families (default: all of bench/loop.py's)."
    ),
    seeds: int = typer.Option(5, help="Seeds per family (a fresh database per arm).", min=1),
    rounds: int = typer.Option(3, help="Rounds per arm.", min=1),
    agreements: str = typer.Option(
        "0.6,0.7,0.8", help="The simulated judge's pairwise agreement with the true preference."
    ),
    model_dir: Path | None = typer.Option(
        None, help="An existing tiny model directory (default: build one, about a minute)."
    ),
    jobs: int = typer.Option(1, help="Arms run at once (each a process using one core)."),
    quick: bool = typer.Option(
        False,
        help="Smoke run: family 'length', 1 seed, 1 round, the 0.8 judge only, 24 project "
        "prompts, 12 held-out prompts × 2 samples.",
    ),
    heldout_prompts: int = typer.Option(60, help="Prompts kept out of the project.", min=1),
    measure_samples: int = typer.Option(6, help="Samples per held-out prompt.", min=1),
    throughput_items: int = typer.Option(24, help="Tasks judged per throughput figure.", min=1),
    project_prompts: int | None = typer.Option(
        None, help="Keep only this many of the project's prompts (default: all the suite's)."
    ),
    save: Path | None = typer.Option(None, help="Write each arm's result here as it finishes."),
) -> None:
    if quick:
        families, seeds, rounds, agreements = "length", 1, 1, "0.8"
        throughput_items = min(throughput_items, 8)
    levels = [float(a) for a in agreements.split(",") if a.strip()]
    arms = [Arm(1.0), Arm(HUMAN_SHARE), *(Arm(HUMAN_SHARE, a) for a in levels)]
    jobs_by_seed = _suite_jobs(
        families, seeds, rounds, "reward_ppo", 3, 0.5, heldout_prompts, measure_samples
    )  # bench/loop.py --suite's defaults: 3 annotators, noise 0.5
    for job in jobs_by_seed:
        job.project_prompts = job.project_prompts[:project_prompts]
    if quick:
        for job in jobs_by_seed:
            job.project_prompts = job.project_prompts[:24]
            job.measure_prompts = job.measure_prompts[:12]
            job.measure_samples = 2
    planned = [ArmJob(job, arm) for job in jobs_by_seed for arm in arms]
    if model_dir is None:
        from worker.training.tiny_model import make_tiny_model

        model_dir = Path(tempfile.mkdtemp(prefix="rankloop-bench-tiny-")) / "tiny"
        with console.status("Building the tiny model…"):
            make_tiny_model(model_dir)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each arm is a subprocess
        results = list(pool.map(lambda item: _run_arm(item, model_dir, save), planned))
    _print(arms, planned, results)
    table = Table("judge", "rankings per second", title="Judge throughput")
    for name, rate in throughput(model_dir, jobs_by_seed[0].preference, throughput_items).items():
        table.add_row(name, f"{rate:.1f}")
    console.print(table)


if __name__ == "__main__":
    app()
