"""Judge throughput for the benchmark: rankings per second over a list of items."""

from __future__ import annotations

import time
from collections.abc import Sequence

from worker.judging.spec import Judge, JudgeError, JudgeInput


def measure(judge: Judge, items: Sequence[JudgeInput]) -> float:
    """Verdicts per wall-clock second over `items` judged one after another (failures take
    time but count no ranking)."""
    start = time.perf_counter()
    done = 0
    for item in items:
        try:
            judge.judge(item)
        except JudgeError:
            continue
        done += 1
    elapsed = time.perf_counter() - start
    return done / elapsed if elapsed > 0 else float("inf")
