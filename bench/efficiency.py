"""Fewer human rankings for the same result (issue 22): uniform + unweighted against active +
reliability-weighted, with a mixed crowd of simulated annotators, on the tiny model.

Per seed and arm: a fresh SQLite database (a process of its own, bench/_process.py), a project
created as a new user would (the form's defaults, except: no worker top-ups, 2 annotations per
task so annotators share tasks for the reliability fit, and the arm's settings), and a mixed
crowd (app/simulation/annotators.MIXED_CROWD: 60 % at the default noise, 30 % at three times
it, 10 % reversed) who rank over HTTP. Arms differ only by project settings:

    A  selection=uniform, reliability_weighting off
    B  selection=active,  reliability_weighting on
    C  B's rankings of the default-noise annotators alone (the others excluded), unweighted

Between checkpoints (rankings so far) the product's own paths run: a sampling job over the
prompts with the fewest tasks (active selection picks prompts and samples there), the
annotators rank its tasks, the ratings job refits (reliability rows, the leaderboard). Both
arms alike, after the first sampling job, --gold-tasks of its tasks (seeded draw) are marked
gold through app.gold.service.mark_gold with the true preference's ordering; the queue mixes
them in at the project's default gold_rate (0.1), their rankings count among the rankings
(people rank them) and feed the reliability fit (gold pairs corroborate a 'reversed' flag),
and the product keeps them out of ratings and training. At each checkpoint the reward-model
stage's function (worker/jobs/reward_model.train_project_reward_model, on a fresh snapshot,
registered so active selection uses it next) trains, and is scored on a fixed held-out set:
base-model samples of prompts the project never sees, every pair the TRUE preference orders
(not the annotators' noisy labels). The preference is drawn per seed from a family of
bench/loop.py (--families; seed s takes the s-th, cycling).

Printed: held-out accuracy per arm and checkpoint (mean over seeds, and per seed; beside it
the labels' ceiling, the true preference's accuracy on the annotators' own rankings, and the
reward model's own held-out accuracy with its best epoch: 0 is the untrained model, which
early stopping keeps when training never beat it, and which ranks nothing: 0.500), the
reliability flags (reversed annotators flagged, and others flagged, among those with ≥ 30
rankings), per kind of annotator the gold accuracy (pooled pairs, the gold page's Wilson
interval), task selection reasons, the leaderboard's decisive verdicts (n/a: one version, the
bench trains no policy), and the study planner's estimate against what the run needed. Then
the goals: B reaches A's final accuracy with ≥ 40 % fewer rankings; B within 0.03 of C;
reversed annotators flagged with ≥ 90 % recall and ≤ 5 % false positives; the planner
within ±30 %. A piece of the product that is missing is named, and its figure is n/a.

    .venv/bin/rankloop models make-tiny /tmp/tiny
    .venv/bin/python -m bench.efficiency --quick --model-dir /tmp/tiny   # 1 seed, 100 and 200
    .venv/bin/python -m bench.efficiency --model-dir /tmp/tiny --jobs 2  # 5 seeds, 100-800
    .venv/bin/python -m bench.efficiency --model-dir /tmp/tiny --seeds 2 --first-seed 3  # 3, 4

--quick runs both arms at once (one core each); its 20 rankings an annotator are under the
flags' minimum of 30, and its two checkpoints leave the planner nothing to check (it needs
two reward models to fit and a third to compare with): those goals read n/a there.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process

app = typer.Typer(add_completion=False)
console = Console(width=200)

ARMS: dict[str, dict[str, Any]] = {
    "A": {"selection": "uniform", "reliability_weighting": False},
    "B": {"selection": "active", "reliability_weighting": True},
}
PROJECT: dict[str, Any] = {
    # The loop samples between checkpoints itself (deterministically): no worker top-ups.
    "min_open_tasks": 0,
    # Two annotators a task: reliability is fitted from tasks people share (the Crowd-BT
    # consensus); with one a task, every ranking is its own consensus.
    "annotations_per_task": 2,
}
FAMILY_ORDER = ("length", "keywords_length", "sentiment_words", "avoid", "keywords", "opening")
"""bench/loop.py's families, the dense ones first: a one-seed run gets a preference that
orders most pairs (most `keywords` pairs tie at 0 on the tiny model's answers)."""
CHECKPOINTS = (100, 200, 400, 800)
QUICK_CHECKPOINTS = (100, 200)
"""Two checkpoints, sized to finish in 15 minutes on 2 cores: 20 rankings an annotator, under
the flags' minimum of 30, so --quick prints the flags of every annotator beside that goal."""
FLAG_MIN_RANKINGS = 30
HELDOUT_PROMPTS = 48
HELDOUT_SAMPLES = 6
"""Samples per held-out prompt: 15 pairs each, 720 in all before the preference's ties."""
GOLD_TASKS = 12
"""Gold tasks per run, from the first sampling job (at the project's default gold_rate, 0.1,
each annotator meets one in ten leases): a task's 4 samples are up to 6 judged pairs, so an
annotator reaches the 10 gold pairs that corroborate a 'reversed' flag after 2 or 3 of them."""
GOALS = {
    "saving": 0.40,
    "clean_gap": 0.03,
    "recall": 0.90,
    "false_positives": 0.05,
    "planner": 0.30,
}


@dataclass
class ArmJob:
    """One arm of one seed, passed to its process."""

    arm: str
    seed: int
    family: str
    preference: str
    checkpoints: list[int]
    annotators: int
    noise: float
    crowd: str
    project_prompts: list[str]
    heldout: list[tuple[str, list[str]]]
    """(prompt, base-model samples) the reward models are scored on."""
    clean: bool = False
    """Also train arm C at each checkpoint (on this arm's default-noise annotators)."""
    gold_tasks: int = 0
    """Tasks of the first sampling job marked gold with the true preference's ordering."""
    settings: dict[str, Any] = field(default_factory=dict)


# The child process: one arm --------------------------------------------------------------


def _arm_process(job: ArmJob, env: dict[str, str]) -> dict[str, Any]:
    """Runs in a process of its own; `env` points RANKLOOP_* at a fresh data directory."""
    for key in [k for k in os.environ if k.startswith("RANKLOOP_")]:
        del os.environ[key]
    os.environ.update(env)
    from app import migrate
    from app.config import get_settings
    from app.db import session_scope
    from app.simulation.annotators import crowd_models, run_annotators
    from app.simulation.preferences import load_preference
    from app.simulation.service import ensure_simulated_annotators
    from rankloop.simulation import (
        TINY_ROUND,
        labels_ceiling,
        loop_project,
        sample_current_version,
    )
    from rankloop.simulation import serve_in_thread as serve
    from worker.jobs.ratings import recompute_if_dirty
    from worker.jobs.reward_model import train_project_reward_model
    from worker.threads import configure_torch_threads

    configure_torch_threads(threads=1)
    migrate.upgrade("head")
    with session_scope() as session:
        project_id = loop_project(
            session,
            name=f"Efficiency {job.arm} seed {job.seed}",
            base_model=get_settings().default_base_model,
            settings={**PROJECT, **job.settings},
            prompts=list(job.project_prompts),
        )
        logins = ensure_simulated_annotators(session, project_id=project_id, count=job.annotators)
    people = crowd_models(job.annotators, job.crowd, noise=job.noise, bias=0.0, seed=job.seed)
    kinds = {c.username: p for c, p in zip(logins, people, strict=True)}
    preference = load_preference(job.preference)
    rm_settings = dict(TINY_ROUND["reward_model"])
    notes: list[str] = []
    points: list[dict[str, Any]] = []
    done = 0
    gold: list[int] | None = None
    with serve() as url:
        for index, checkpoint in enumerate(job.checkpoints):
            seconds: dict[str, float] = {}
            started = time.perf_counter()
            while done < checkpoint:
                batch = checkpoint - done
                tasks = math.ceil(batch / PROJECT["annotations_per_task"])
                t0 = time.perf_counter()
                sample_current_version(project_id, seed=job.seed * 100 + index, prompts=tasks)
                seconds["sampling"] = seconds.get("sampling", 0.0) + time.perf_counter() - t0
                if gold is None:
                    gold = _mark_gold(project_id, job, preference)
                    if len(gold) < job.gold_tasks:
                        notes.append(f"{len(gold)} of {job.gold_tasks} gold tasks marked")
                ranked = run_annotators(
                    url,
                    logins,
                    preference,
                    project_id=project_id,
                    seed=job.seed * 100 + index,
                    max_tasks=batch,
                    people=people,
                )
                if ranked.errors:
                    raise RuntimeError("; ".join(ranked.errors))
                if ranked.submitted == 0:
                    notes.append(f"no tasks left at {done} rankings")
                    break
                done += ranked.submitted
            seconds["annotating"] = time.perf_counter() - started - seconds.get("sampling", 0.0)
            t0 = time.perf_counter()
            recompute_if_dirty(project_id)
            seconds["ratings"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            run = train_project_reward_model(
                project_id, rm_settings, seed=job.seed * 100 + index, name=f"at {done}"
            )
            seconds["reward model"] = time.perf_counter() - t0
            point: dict[str, Any] = {
                "rankings": done,
                "accuracy": _heldout_accuracy(run.artifact_uri, job.heldout, preference),
                "ceiling": labels_ceiling(project_id, preference),
                "rm_heldout": run.summary.get("heldout_accuracy"),
                "rm_best_epoch": run.summary.get("best_epoch"),
                "rm_n_heldout": run.summary.get("n_heldout"),
                "weights": _snapshot_weights(run.snapshot_id),
                "flags": _flags(project_id, kinds),
                "gold": len(gold or []),
                "reasons": _reasons(project_id),
                "versions": _versions(project_id),
                "planner_point": _planner_point(project_id),
            }
            if job.clean:
                t0 = time.perf_counter()
                point["clean"] = _clean_arm(project_id, kinds, rm_settings, job, index)
                seconds["clean reward model"] = time.perf_counter() - t0
            point["seconds"] = seconds
            points.append(point)
            clean = point.get("clean", {}).get("accuracy")
            console.print(
                f"{job.arm} seed {job.seed}: {done} rankings, held-out accuracy "
                f"{_fmt(point['accuracy']['accuracy'])} (C {_fmt(clean)}), "
                + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            )
    return {
        "arm": job.arm,
        "seed": job.seed,
        "family": job.family,
        "preference": job.preference,
        "points": points,
        "notes": notes,
        "ensemble": _ensemble_present(project_id),
    }


def _mark_gold(project_id: int, job: ArmJob, preference: Any) -> list[int]:
    """Mark `job.gold_tasks` of the first sampling job's tasks gold (app.gold.service, as an
    admin does) with the true preference's ordering, ties grouped; a task whose samples the
    preference all ties is passed over. The draw is seeded, the same procedure in both arms."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.gold import repository as gold_repository
    from app.gold.service import mark_gold
    from app.models import RankingTask

    marked: list[int] = []
    if job.gold_tasks <= 0:
        return marked
    with session_scope() as session:
        task_ids = sorted(
            session.scalars(select(RankingTask.id).where(RankingTask.project_id == project_id))
        )
        for task_id in random.Random(f"gold:{job.seed}").sample(task_ids, len(task_ids)):
            if len(marked) == job.gold_tasks:
                break
            scored = sorted(
                ((preference(text), sample_id)
                 for sample_id, text in gold_repository.task_samples(session, task_id)),
                reverse=True,
            )  # fmt: skip
            groups: list[list[int]] = []
            for i, (score, sample_id) in enumerate(scored):
                if i and score == scored[i - 1][0]:
                    groups[-1].append(sample_id)
                else:
                    groups.append([sample_id])
            if len(groups) < 2:
                continue
            mark_gold(session, project_id=project_id, task_id=task_id, groups=groups)
            marked.append(task_id)
    return marked


def _heldout_accuracy(
    artifact_uri: str, heldout: list[tuple[str, list[str]]], preference: Any
) -> dict[str, float | int]:
    """Pair accuracy of the reward model against the true preference's order, on every pair
    of distinct held-out samples the preference does not tie; a reward tie counts half."""
    from app.artifacts import get_store
    from worker.jobs.rounds import load_reward_model_dir
    from worker.training.reward_model import score

    rm, tokenizer = load_reward_model_dir(Path(get_store().local_dir(artifact_uri)))
    prompts = [prompt for prompt, texts in heldout for _ in texts]
    texts = [text for _, group in heldout for text in group]
    rewards = iter(score(rm, tokenizer, prompts, texts, raw=True))
    right = total = 0.0
    for _, group in heldout:
        scored = [(text, preference(text), next(rewards)) for text in group]
        for i, (text_a, true_a, reward_a) in enumerate(scored):
            for text_b, true_b, reward_b in scored[i + 1 :]:
                if true_a == true_b or text_a.strip() == text_b.strip():
                    continue
                total += 1
                agree = (true_a - true_b) * (reward_a - reward_b)
                right += 1.0 if agree > 0 else 0.5 if agree == 0 else 0.0
    return {"accuracy": right / total if total else float("nan"), "pairs": int(total)}


def _snapshot_weights(snapshot_id: int) -> dict[str, Any]:
    """The weights the snapshot froze (1 everywhere when weighting is off or not built)."""
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import ComparisonSnapshot, SnapshotComparison

    with session_scope(readonly=True) as session:
        low, mean = session.execute(
            select(func.min(SnapshotComparison.weight), func.avg(SnapshotComparison.weight)).where(
                SnapshotComparison.snapshot_id == snapshot_id
            )
        ).one()
        snapshot = session.get(ComparisonSnapshot, snapshot_id)
        criteria = dict(snapshot.criteria) if snapshot is not None else {}
    return {
        "min": low,
        "mean": mean,
        "applied": criteria.get("reliability_weights", "not recorded"),
    }


def _flags(project_id: int, kinds: dict[str, Any]) -> dict[str, Any]:
    """Per simulated annotator: reversed or not, rankings, the reliability row's figures."""
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.gold.service import gold_accuracy
    from app.models import AnnotatorReliability, Ranking, User

    with session_scope(readonly=True) as session:
        users = dict(session.execute(select(User.id, User.username)).all())
        gold = gold_accuracy(session, project_id)
        counts = dict(
            session.execute(
                select(Ranking.user_id, func.count())
                .where(Ranking.project_id == project_id)
                .group_by(Ranking.user_id)
            ).all()
        )
        rows = {
            row.user_id: row
            for row in session.scalars(
                select(AnnotatorReliability).where(AnnotatorReliability.project_id == project_id)
            )
        }
        people = []
        for user_id, username in users.items():
            if username not in kinds:
                continue
            row = rows.get(user_id)
            people.append(
                {
                    "username": username,
                    "reversed": kinds[username].reversed,
                    "noise": kinds[username].temperature,
                    "rankings": int(counts.get(user_id, 0)),
                    "fitted": row is not None,
                    "reliability": None if row is None else row.reliability,
                    "weight": None if row is None else row.weight,
                    "flag": None if row is None else row.flag,
                    "gold_pairs": gold.get(user_id, (0, 0.0))[0],
                    "gold_correct": gold.get(user_id, (0, 0.0))[1],
                }
            )
    return {"people": people, "fitted": bool(rows)}


def _planner_point(project_id: int) -> dict[str, float] | None:
    """The newest reward model as the project page's planner reads it (rankings in its
    snapshot, its own held-out accuracy, the count its standard error rests on)."""
    try:
        from app.projects.planner_service import reward_model_points
    except ImportError:
        return None
    from app.db import session_scope

    with session_scope(readonly=True) as session:
        points = reward_model_points(session, project_id)
    if not points:
        return None
    last = points[-1]
    return {"rankings": last.rankings, "accuracy": last.accuracy, "count": last.count}


def _reasons(project_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import RankingTask

    with session_scope(readonly=True) as session:
        return {
            str(reason): int(n)
            for reason, n in session.execute(
                select(RankingTask.selection_reason, func.count())
                .where(RankingTask.project_id == project_id)
                .group_by(RankingTask.selection_reason)
            ).all()
        }


def _versions(project_id: int) -> list[dict[str, Any]]:
    """The leaderboard's verdict per version (one version here: the bench trains no policy)."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import PolicyRating, PolicyVersion

    with session_scope(readonly=True) as session:
        return [
            {"number": version.number, "verdict": rating.verdict if rating else None}
            for version, rating in session.execute(
                select(PolicyVersion, PolicyRating)
                .outerjoin(PolicyRating, PolicyRating.policy_version_id == PolicyVersion.id)
                .where(PolicyVersion.project_id == project_id)
            ).all()
        ]


def _clean_arm(
    project_id: int, kinds: dict[str, Any], rm_settings: dict[str, Any], job: ArmJob, index: int
) -> dict[str, Any]:
    """Arm C: exclude every annotator not at the default noise (an admin's exclusion, so the
    snapshot leaves them out as it would), weighting off, train unregistered; then undo both."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Project, User
    from app.ratings import service as ratings
    from worker.jobs.reward_model import train_project_reward_model

    others = [
        name for name, person in kinds.items() if person.reversed or person.temperature != job.noise
    ]
    with session_scope() as session:
        ids = list(session.scalars(select(User.id).where(User.username.in_(others))))
        for user_id in ids:
            ratings.set_excluded(session, project_id=project_id, user_id=user_id, excluded=True)
        project = session.get(Project, project_id)
        assert project is not None
        weighting, project.reliability_weighting = project.reliability_weighting, False
    try:
        run = train_project_reward_model(
            project_id,
            rm_settings,
            seed=job.seed * 100 + index,
            name=f"clean annotators, {index}",
            register=False,
        )
        from app.simulation.preferences import load_preference

        accuracy = _heldout_accuracy(run.artifact_uri, job.heldout, load_preference(job.preference))
        with session_scope(readonly=True) as session:
            from sqlalchemy import func

            from app.models import Comparison, SnapshotComparison

            rankings = session.scalar(
                select(func.count(func.distinct(Comparison.ranking_id)))
                .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
                .where(SnapshotComparison.snapshot_id == run.snapshot_id)
            )
    finally:
        with session_scope() as session:
            for user_id in ids:
                ratings.set_excluded(
                    session, project_id=project_id, user_id=user_id, excluded=False
                )
            project = session.get(Project, project_id)
            assert project is not None
            project.reliability_weighting = weighting
    return {**accuracy, "rankings": int(rankings or 0)}


def _ensemble_present(project_id: int) -> bool | None:
    """Whether the latest reward model's artifact holds a bootstrap ensemble (active
    selection's uncertainty); None when no reward model exists."""
    from app.artifacts import get_store
    from app.db import session_scope
    from app.rounds import repository

    with session_scope(readonly=True) as session:
        latest = repository.latest_reward_model(session, project_id)
        uri = latest.artifact_uri if latest is not None else None
    if uri is None:
        return None
    directory = Path(get_store().local_dir(uri))
    return any(p.name.startswith("ensemble") for p in directory.rglob("*"))


def _heldout_samples(
    model_dir: str, prompts: list[str], per_prompt: int, seed: int
) -> list[tuple[str, list[str]]]:
    """Base-model samples of the held-out prompts, at the loop's sampling settings."""
    from worker.threads import configure_torch_threads
    from worker.training.evaluation import sample_once
    from worker.training.models import load_causal_lm, load_tokenizer

    configure_torch_threads(threads=1)
    model, tokenizer = load_causal_lm(model_dir), load_tokenizer(model_dir)
    repeated = [p for p in prompts for _ in range(per_prompt)]
    samples = sample_once(
        model, tokenizer, repeated, temperature=1.0, max_new_tokens=64, seed=seed, batch_size=32
    )
    texts = [s.text for s in samples]
    return [
        (prompt, texts[i * per_prompt : (i + 1) * per_prompt]) for i, prompt in enumerate(prompts)
    ]


# The parent: plan, run, print ------------------------------------------------------------


def _run_arm(job: ArmJob, model_dir: Path) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"rankloop-bench-eff-{job.arm}{job.seed}-"))
    env = {
        "RANKLOOP_DATA_DIR": str(data_dir),
        "RANKLOOP_DEFAULT_BASE_MODEL": str(model_dir),
        "HF_HUB_OFFLINE": "1",
    }
    started = time.perf_counter()
    try:
        result: dict[str, Any] = run_in_process(_arm_process, job, env)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    result["wall"] = time.perf_counter() - started
    return result


def _plan(
    seeds: int, families: list[str], checkpoints: list[int], annotators: int, noise: float,
    crowd: str, model_dir: Path, *, first_seed: int = 0, gold_tasks: int = GOLD_TASKS,
) -> list[ArmJob]:  # fmt: skip
    from app.simulation.preferences import answer_openers, answer_vocabulary, draw_preference
    from rankloop.simulation import corpus_answers, prompt_pool

    answers = corpus_answers()
    vocabulary, openers = answer_vocabulary(answers), answer_openers(answers)
    pool = prompt_pool()
    jobs = []
    for seed in range(first_seed, first_seed + seeds):
        family = families[seed % len(families)]
        spec, _ = draw_preference(
            family, random.Random(f"{family}:{seed}"), vocabulary, openers=openers
        )
        shuffled = random.Random(f"heldout:{seed}").sample(pool, len(pool))
        held, kept = shuffled[:HELDOUT_PROMPTS], shuffled[HELDOUT_PROMPTS:]
        with console.status(f"Seed {seed}: sampling the held-out set…"):
            heldout = run_in_process(
                _heldout_samples, str(model_dir), held, HELDOUT_SAMPLES, 10_000 + seed
            )
        for arm, settings in ARMS.items():
            jobs.append(
                ArmJob(
                    arm, seed, family, spec, list(checkpoints), annotators, noise, crowd, kept,
                    heldout, clean=arm == "B", gold_tasks=gold_tasks, settings=settings,
                )
            )  # fmt: skip
    return jobs


@app.command()
def main(
    seeds: int = typer.Option(5, help="Independent runs (fresh databases, own preference)."),
    first_seed: int = typer.Option(
        0, help="The first seed (seeds run first_seed, first_seed+1, …): split runs by hand."
    ),
    checkpoints: str = typer.Option(
        ",".join(map(str, CHECKPOINTS)), help="Rankings at which reward models are trained."
    ),
    quick: bool = typer.Option(
        False, help=f"1 seed, checkpoints {','.join(map(str, QUICK_CHECKPOINTS))}."
    ),
    families: str = typer.Option(
        ",".join(FAMILY_ORDER), help="Preference families; seed s takes the s-th (cycling)."
    ),
    annotators: int = typer.Option(10, help="Simulated annotators (10: 6, 3 and 1).", min=1),
    noise: float = typer.Option(0.5, help="The default noise (Bradley-Terry temperature).", min=0),
    crowd: str = typer.Option("mixed", help="The crowd (rankloop simulate --crowd)."),
    model_dir: Path | None = typer.Option(
        None, help="An existing tiny model directory (default: build one, about a minute)."
    ),
    gold_tasks: int = typer.Option(
        GOLD_TASKS,
        help="Tasks of the first sampling job marked gold with the true ordering (0: none).",
        min=0,
    ),
    jobs: int | None = typer.Option(
        None, help="Arms run at once (each uses one core); default 1, with --quick 2."
    ),
) -> None:
    from app.simulation.annotators import parse_crowd
    from app.simulation.preferences import FAMILIES

    parse_crowd(crowd)
    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown or not chosen:
        raise typer.BadParameter(f"unknown {unknown}; families: {', '.join(FAMILIES)}")
    marks = list(QUICK_CHECKPOINTS) if quick else sorted({int(c) for c in checkpoints.split(",")})
    seeds = 1 if quick else seeds
    jobs = jobs if jobs is not None else (2 if quick else 1)
    if model_dir is None:
        from worker.training.tiny_model import make_tiny_model

        model_dir = Path(tempfile.mkdtemp(prefix="rankloop-bench-tiny-")) / "tiny"
        with console.status("Building the tiny model…"):
            make_tiny_model(model_dir)
    console.print(_available())
    planned = _plan(
        seeds, chosen, marks, annotators, noise, crowd, model_dir,
        first_seed=first_seed, gold_tasks=gold_tasks,
    )  # fmt: skip
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda job: _run_arm(job, model_dir), planned))
    _print(results, marks)
    console.print(f"Wall time {time.perf_counter() - started:.0f} s ({len(planned)} arm runs).")


def _available() -> str:
    """Which pieces of issue 22 this checkout has: each missing one is said, not hidden."""
    import importlib.util

    pieces = {
        "reliability fit": "app.ratings.reliability",
        "active selection": "app.sampling.selection",
        "reward-head ensemble": "worker.training.reward_ensemble",
        "study planner": "app.projects.planner",
    }
    missing = [name for name, module in pieces.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return "All pieces present: reliability fit, active selection, ensemble, planner."
    return "Not available yet: " + ", ".join(f"{m} ({pieces[m]})" for m in missing)


# Printing ----------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".3f") -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def _print(results: list[dict[str, Any]], marks: list[int]) -> None:
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_arm.setdefault(result["arm"], []).append(result)

    per_seed = Table(
        "arm", "seed", "preference", "rankings", "held-out acc", "pairs", "labels' ceiling",
        "RM own acc (best epoch)",
        "C acc (rankings)", "weights min/mean", "reasons", "gold tasks", "ensemble", "seconds",
        title="Per seed and checkpoint",
    )  # fmt: skip
    for result in results:
        for point in result["points"]:
            clean = point.get("clean")
            weights = point["weights"]
            per_seed.add_row(
                result["arm"],
                str(result["seed"]),
                result["preference"],
                str(point["rankings"]),
                _fmt(point["accuracy"]["accuracy"]),
                str(point["accuracy"]["pairs"]),
                _fmt(point.get("ceiling")),
                f"{_fmt(point['rm_heldout'])} ({point.get('rm_best_epoch')})",
                "-" if clean is None else f"{_fmt(clean['accuracy'])} ({clean['rankings']})",
                f"{_fmt(weights['min'], '.2f')}/{_fmt(weights['mean'], '.2f')} "
                f"({weights['applied']})",
                ", ".join(f"{k} {v}" for k, v in sorted(point["reasons"].items())),
                str(point.get("gold", 0)),
                {True: "yes", False: "no", None: "-"}[result["ensemble"]],
                ", ".join(f"{k} {v:.0f}" for k, v in point["seconds"].items()),
            )
        for note in result["notes"]:
            console.print(f"[yellow]{result['arm']} seed {result['seed']}: {note}[/yellow]")
    console.print(per_seed)

    curve: dict[str, list[tuple[float, float | None]]] = {}
    summary = Table("rankings (target)", "A uniform+unweighted", "B active+weighted",
                    "C clean 60% alone", "B − C", title="Held-out accuracy against the true "
                    "preference, mean over seeds")  # fmt: skip
    for i, mark in enumerate(marks):
        row = {}
        for arm in ("A", "B"):
            row[arm] = _mean(
                [
                    r["points"][i]["accuracy"]["accuracy"]
                    for r in by_arm.get(arm, [])
                    if i < len(r["points"])
                ]
            )
            done = _mean(
                [r["points"][i]["rankings"] for r in by_arm.get(arm, []) if i < len(r["points"])]
            )
            curve.setdefault(arm, []).append((done if done is not None else mark, row[arm]))
        row["C"] = _mean(
            [
                r["points"][i]["clean"]["accuracy"]
                for r in by_arm.get("B", [])
                if i < len(r["points"])
            ]
        )
        gap = None if row["B"] is None or row["C"] is None else row["B"] - row["C"]
        summary.add_row(
            str(mark), _fmt(row["A"]), _fmt(row["B"]), _fmt(row["C"]), _fmt(gap, "+.3f")
        )
    console.print(summary)

    # Goal 1: rankings B needs to reach A's final accuracy (linear between checkpoints).
    a_final = curve.get("A", [(0, None)])[-1][1]
    b_needed = _reach(curve.get("B", []), a_final)
    a_needed = curve.get("A", [(0, None)])[-1][0]
    saving = None if b_needed is None or not a_needed else 1 - b_needed / a_needed
    # Goal 2: |B - C| at the last checkpoint.
    last = len(marks) - 1
    b_last = _mean(
        [
            r["points"][last]["accuracy"]["accuracy"]
            for r in by_arm.get("B", [])
            if len(r["points"]) > last
        ]
    )
    c_last = _mean(
        [
            r["points"][last]["clean"]["accuracy"]
            for r in by_arm.get("B", [])
            if len(r["points"]) > last
        ]
    )
    gap = None if b_last is None or c_last is None else abs(b_last - c_last)
    # Goal 3: flags at the last checkpoint, both arms pooled.
    last_flags = [r["points"][-1]["flags"] for r in results if r["points"]]
    flags = _flag_rates(last_flags)
    console.print(
        "Reliability flags at the last checkpoint, every annotator whatever their rankings "
        "(both arms): " + _flag_rates(last_flags, min_rankings=0)["text"]
    )
    _print_reliability(results)
    # Goal 4: the planner.
    planner = _planner(results)

    goals = Table("goal", "measured", "met", title="Goals (issue 22, Performance)")
    goals.add_row(
        f"B reaches A's final accuracy ({_fmt(a_final)}) with ≥ {GOALS['saving']:.0%} fewer "
        "rankings",
        "not reached"
        if b_needed is None
        else f"at {'≤ ' if b_needed == curve['B'][0][0] else ''}{b_needed:.0f} of "
        f"{a_needed:.0f} rankings: {saving:.0%} fewer",
        _met(saving is not None and saving >= GOALS["saving"], saving is None and a_final is None),
    )
    goals.add_row(
        f"B within {GOALS['clean_gap']} of C at {marks[-1]} rankings",
        f"|{_fmt(b_last)} − {_fmt(c_last)}| = {_fmt(gap)}",
        _met(gap is not None and gap <= GOALS["clean_gap"], gap is None),
    )
    goals.add_row(
        f"reversed flagged: recall ≥ {GOALS['recall']:.0%}, false positives ≤ "
        f"{GOALS['false_positives']:.0%} (≥ {FLAG_MIN_RANKINGS} rankings each)",
        flags["text"],
        _met(flags["met"], flags["met"] is None),
    )
    goals.add_row(f"planner within ±{GOALS['planner']:.0%} of what the run needed", planner["text"],
                  _met(planner["met"], planner["met"] is None))  # fmt: skip
    goals.add_row(
        "leaderboard's decisive verdicts",
        "n/a: one policy version per run (the bench trains reward models, no policy)",
        "-",
    )
    console.print(goals)


def _print_reliability(results: list[dict[str, Any]]) -> None:
    """The reliability rows at the last checkpoint, by arm and kind of annotator."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        if not result["points"]:
            continue
        for person in result["points"][-1]["flags"]["people"]:
            kind = "reversed" if person["reversed"] else f"noise {person['noise']:g}"
            groups.setdefault((result["arm"], kind), []).append(person)
    table = Table(
        "arm", "annotators", "count", "rankings (mean)", "reliability (mean)", "weight (mean)",
        "flags", "gold pairs (mean)", "gold accuracy [95%]",
        title="Reliability at the last checkpoint, by kind of annotator (gold accuracy: their "
        "judged gold pairs pooled, a tie half, Wilson interval as the gold page shows it)",
    )  # fmt: skip
    for (arm, kind), people in sorted(groups.items()):
        fitted = [p for p in people if p["fitted"]]
        flags = Counter(str(p["flag"]) for p in fitted if p["flag"])
        table.add_row(
            arm,
            kind,
            str(len(people)),
            _fmt(_mean([p["rankings"] for p in people]), ".0f"),
            _fmt(_mean([p["reliability"] for p in fitted]), ".2f"),
            _fmt(_mean([p["weight"] for p in fitted]), ".2f"),
            ", ".join(f"{k} {v}" for k, v in sorted(flags.items())) or "none",
            _fmt(_mean([p.get("gold_pairs", 0) for p in people]), ".1f"),
            _gold_accuracy(people),
        )
    console.print(table)


def _gold_accuracy(people: list[dict[str, Any]]) -> str:
    """Pooled gold accuracy of these annotators with its 95% Wilson interval (pairs of one
    ranking are not independent, so the interval is narrower than the truth)."""
    from app.gold.service import wilson

    pairs = sum(p.get("gold_pairs", 0) for p in people)
    if not pairs:
        return "n/a (no gold pairs)"
    correct = sum(p.get("gold_correct", 0.0) for p in people)
    low, high = wilson(correct, pairs)
    return f"{correct / pairs:.2f} [{low:.2f}, {high:.2f}]"


def _met(ok: bool | None, unknown: bool) -> str:
    return "n/a" if unknown else ("yes" if ok else "NO")


def _reach(curve: list[tuple[float, float | None]], target: float | None) -> float | None:
    """Rankings at which the curve first reaches `target`, linear between checkpoints."""
    if target is None:
        return None
    previous: tuple[float, float] | None = None
    for rankings, accuracy in curve:
        if accuracy is None:
            continue
        if accuracy >= target:
            if previous is None or accuracy == previous[1]:
                return rankings
            n0, a0 = previous
            return n0 + (target - a0) / (accuracy - a0) * (rankings - n0)
        previous = (rankings, accuracy)
    return None


def _flag_rates(
    snapshots: list[dict[str, Any]], *, min_rankings: int = FLAG_MIN_RANKINGS
) -> dict[str, Any]:
    if not snapshots or not any(s["fitted"] for s in snapshots):
        return {
            "text": "n/a: no reliability rows (the reliability fit is not available yet)",
            "met": None,
        }
    people = [p for s in snapshots for p in s["people"] if p["rankings"] >= min_rankings]
    reversed_ = [p for p in people if p["reversed"]]
    others = [p for p in people if not p["reversed"]]
    if not reversed_ or not others:
        return {"text": f"n/a: too few annotators with ≥ {min_rankings} rankings", "met": None}
    caught = sum(p["flag"] == "reversed" for p in reversed_)
    wrong = sum(p["flag"] == "reversed" for p in others)
    chance = Counter(p["flag"] for p in others if p["flag"] and p["flag"] != "reversed")
    recall, fpr = caught / len(reversed_), wrong / len(others)
    text = (
        f"recall {caught}/{len(reversed_)} = {recall:.0%}, false positives {wrong}/{len(others)} "
        f"= {fpr:.0%}" + (f"; others flagged {dict(chance)}" if chance else "")
    )
    return {"text": text, "met": recall >= GOALS["recall"] and fpr <= GOALS["false_positives"]}


def _planner(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run: the planner fed the reward models as the project page reads them (rankings in
    each snapshot, its own held-out accuracy on the annotators' labels) up to the last-but-one
    checkpoint, asked for the rankings that reach the last checkpoint's accuracy; compared
    with the rankings the run then used."""
    try:
        from app.projects import planner
    except ImportError:
        return {
            "text": "n/a: the study planner (app/projects/planner.py) is not available yet",
            "met": None,
        }
    errors, reasons = [], []
    for result in results:
        points = [p["planner_point"] for p in result["points"] if p.get("planner_point")]
        if len(points) < 3:
            reasons.append("it needs ≥ 3 checkpoints (≥ 2 reward models to fit, 1 to check)")
            continue
        fitted, target = points[:-1], points[-1]
        plan = planner.rankings_for_accuracy(
            [p["rankings"] for p in fitted],
            [p["accuracy"] for p in fitted],
            [p["count"] for p in fitted],
            target=target["accuracy"],
        )
        if plan.estimate is None:
            reasons.append(str(plan.reason or "no estimate"))
            continue
        errors.append(plan.estimate / target["rankings"] - 1)
    if not errors:
        return {"text": "n/a: " + "; ".join(sorted(set(reasons))), "met": None}
    within = sum(abs(e) <= GOALS["planner"] for e in errors)
    listed = ", ".join(f"{e:+.0%}" for e in errors)
    return {
        "text": f"{within} of {len(errors)} runs within ±{GOALS['planner']:.0%} ({listed})",
        "met": within == len(errors),
    }


if __name__ == "__main__":
    app()
