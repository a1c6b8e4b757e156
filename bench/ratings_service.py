"""What the ratings job and the leaderboard page cost at a realistic project size.

Synthetic project: PROMPTS tasks of 4 samples (2 from each of two adjacent versions out of 4),
each ranked by 2 of 6 annotators. Prints the time of the job's fit (per-sample and per-version
Bradley-Terry with 100 ranking-bootstrap rounds each), of the agreement with consensus, and of
one leave-one-out fit of the outlier test (the page does one per annotator).

`--split` instead prints where the job's time goes (reliability EM, sample point fit, sample
bootstrap, version fit, position-corrected sample fit, the whole `compute` with position
correction on) at 200, 800 and 2000 samples (4 a task, 2 annotators a task).

    python bench/ratings_service.py [PROMPTS]
    python bench/ratings_service.py --split [SAMPLES ...]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from app.db import utcnow
from app.ratings.bradley_terry import fit_ratings
from app.ratings.leaderboard import VersionInfo, fit_by_ranking, rate_versions
from app.ratings.pairs import ranking_to_pairs
from app.ratings.position import PositionInput, first_flags, position_corrected_fit
from app.ratings.reliability import fit_reliability
from app.ratings.repository import ComparisonArrays
from app.ratings.service import FitInput, compute
from app.ratings.service import _agreement_with_consensus as agreement_with_consensus


def synthetic(prompts: int, seed: int = 0) -> tuple[FitInput, dict[int, dict[int, list]]]:
    rng = np.random.default_rng(seed)
    strength = {1: 0.0, 2: 0.2, 3: 0.35, 4: 0.4}  # per version, log10 odds
    cols: dict[str, list] = {
        k: [] for k in ("user", "ranking", "w", "l", "wv", "lv", "tie", "task")
    }
    by_task: dict[int, dict[int, list]] = {}
    sample_id, ranking_id = 0, 0
    for task in range(prompts):
        old = int(rng.integers(1, 4))
        versions = [old, old, old + 1, old + 1]
        ids = list(range(sample_id, sample_id + 4))
        sample_id += 4
        quality = {i: strength[v] + rng.normal(0, 0.3) for i, v in zip(ids, versions, strict=True)}
        version_of = dict(zip(ids, versions, strict=True))
        for user in rng.choice(6, size=2, replace=False).tolist():
            noisy = sorted(ids, key=lambda i: -(quality[i] + rng.normal(0, 0.3)))
            groups = [[i] for i in noisy]
            by_task.setdefault(task, {})[user] = groups
            ranking_id += 1
            for pair in ranking_to_pairs(groups):
                cols["user"].append(user)
                cols["ranking"].append(ranking_id)
                cols["w"].append(pair.winner)
                cols["l"].append(pair.loser)
                cols["wv"].append(version_of[pair.winner])
                cols["lv"].append(version_of[pair.loser])
                cols["tie"].append(pair.tie)
                cols["task"].append(task)
    arrays = ComparisonArrays(
        *(np.asarray(cols[k], dtype=np.int64) for k in ("user", "ranking", "w", "l", "wv", "lv")),
        tie=np.asarray(cols["tie"], dtype=bool),
        task=np.asarray(cols["task"], dtype=np.int64),
    )
    versions = [VersionInfo(v, v, v - 1 if v > 1 else None) for v in strength]
    return FitInput(1, utcnow(), arrays, versions), by_task


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def split(samples: int) -> dict[str, float]:
    """Seconds per part of the ratings job on `samples` samples (samples / 4 tasks)."""
    data, _ = synthetic(samples // 4)
    c = data.comparisons
    assert c.task is not None
    rng = np.random.default_rng(1)
    first: dict[int, int] = {}  # a uniformly drawn first-shown card per ranking
    for r in np.unique(c.ranking).tolist():
        cards = np.unique(np.concatenate([c.winner[c.ranking == r], c.loser[c.ranking == r]]))
        first[r] = int(rng.choice(cards))
    winner_first, loser_first = first_flags(c.ranking, c.winner, c.loser, first)
    point = _timed(lambda: fit_by_ranking(c.winner, c.loser, c.tie, c.ranking, bootstrap=0))
    with_bootstrap = _timed(lambda: fit_by_ranking(c.winner, c.loser, c.tie, c.ranking))
    return {
        "reliability EM": _timed(
            lambda: fit_reliability(c.user, c.ranking, c.task, c.winner, c.loser, c.tie)
        ),
        "sample fit": point,
        "sample bootstrap": with_bootstrap - point,
        "version fit": _timed(
            lambda: rate_versions(
                data.versions, c.winner_version, c.loser_version, c.tie, c.ranking
            )
        ),
        "position fit": _timed(
            lambda: position_corrected_fit(
                c.winner, c.loser, c.tie, c.ranking, winner_first, loser_first
            )
        ),
        "compute (position on)": _timed(
            lambda: compute(dataclasses.replace(data, position=PositionInput(first, True)))
        ),
    }


def print_split(sizes: list[int]) -> None:
    rows = {n: split(n) for n in sizes}
    parts = list(next(iter(rows.values())))
    print(f"{'samples':>8} " + " ".join(f"{p:>22}" for p in parts))
    for n, times in rows.items():
        print(f"{n:>8} " + " ".join(f"{times[p]:>20.3f} s" for p in parts))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--split":
        print_split([int(a) for a in sys.argv[2:]] or [200, 800, 2000])
        return
    prompts = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    data, by_task = synthetic(prompts)
    n = len(data.comparisons)
    print(
        f"{prompts} prompts, {len(np.unique(data.comparisons.ranking))} rankings, "
        f"{n} comparisons, {4 * prompts} samples"
    )

    start = time.perf_counter()
    fitted = compute(data)
    elapsed = time.perf_counter() - start
    print(f"job fit (samples + versions, 100 bootstrap rounds each): {elapsed:.2f} s")
    for v in fitted.versions:
        print(
            f"  v{v.version_id}: {v.rating:.0f} [{v.ci_low:.0f}, {v.ci_high:.0f}] "
            f"vs v{v.previous_id}: {v.verdict}"
        )

    start = time.perf_counter()
    agreement_with_consensus(by_task)
    print(f"agreement with consensus ({len(by_task)} tasks): {time.perf_counter() - start:.2f} s")

    c = data.comparisons.where(data.comparisons.user != 0)
    start = time.perf_counter()
    fit_ratings(c.winner, c.loser, c.tie, bootstrap=0)
    print(f"one leave-one-out fit of the outlier test: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
