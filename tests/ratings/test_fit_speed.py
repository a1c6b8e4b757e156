"""The ratings job's fast path: a project's samples (compared only inside their own prompt)
get the sparse Newton system, and the job's figures equal those of the dense one it replaced
(bench/ratings_service.py --split measures the time)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.ratings import bradley_terry as bt
from app.ratings.position import PositionInput
from app.ratings.service import FitInput, FitOutput, compute
from bench.ratings_service import synthetic

TOLERANCE = 1e-6
"""Rating points: both paths solve the same Newton systems to the same residual, so they
differ only by floating-point summation order."""


def _project(samples: int, seed: int) -> FitInput:
    """bench's synthetic project (4 samples a task, 2 annotators a task, 4 versions) with a
    uniformly drawn first-shown card per ranking and the position term on."""
    data, _ = synthetic(samples // 4, seed=seed)
    c = data.comparisons
    rng = np.random.default_rng(seed)
    first: dict[int, int] = {}
    for ranking in np.unique(c.ranking).tolist():
        mine = c.ranking == ranking
        first[ranking] = int(rng.choice(np.concatenate([c.winner[mine], c.loser[mine]])))
    return dataclasses.replace(data, position=PositionInput(first, correct=True))


def _assert_same_figures(fast: FitOutput, old: FitOutput) -> None:
    np.testing.assert_array_equal(fast.samples.ids, old.samples.ids)
    for column in ("ratings", "lower", "upper"):
        np.testing.assert_allclose(
            getattr(fast.samples, column), getattr(old.samples, column), rtol=0, atol=TOLERANCE
        )
    assert [v.version_id for v in fast.versions] == [v.version_id for v in old.versions]
    for new, before in zip(fast.versions, old.versions, strict=True):
        assert new.verdict == before.verdict
        for field in ("rating", "ci_low", "ci_high"):
            assert getattr(new, field) == pytest.approx(getattr(before, field), abs=TOLERANCE)


def test_project_samples_get_the_sparse_system_and_dense_graphs_the_dense_one() -> None:
    assert not bt.dense_hessian(800, 1200)  # 200 prompts of 4 samples, 6 pairs each
    assert bt.dense_hessian(4, 6)  # a leaderboard's versions
    assert bt.dense_hessian(200, 19900)  # Arena: every pair of 200 models
    assert bt.dense_hessian(600, 600 * 599 // 2)
    assert not bt.dense_hessian(2000, 2000 * 1999 // 2)  # never a 32 MB matrix


@pytest.mark.parametrize("correct_position", [False, True])
def test_ratings_job_fast_path_equals_the_dense_one(
    monkeypatch: pytest.MonkeyPatch, correct_position: bool
) -> None:
    data = _project(samples=240, seed=3)  # above DENSE_ALWAYS_ITEMS
    if not correct_position:
        data = dataclasses.replace(data, position=None)
    fast = compute(data)
    assert not bt.dense_hessian(len(fast.samples.ids), 6 * len(fast.samples.ids) // 4)

    monkeypatch.setattr(bt, "DENSE_MIN_FILL", 0.0)  # the rule before: dense up to 1000 items
    old = compute(data)

    _assert_same_figures(fast, old)
