"""How every trainer reports progress and ends early: one signature, two exceptions.

A trainer calls `progress(step, total_steps, metrics)` after each optimizer step and polls
`should_stop()` before each. It either returns its result (and has saved it), or raises one
of the two exceptions below and has saved nothing, so a caller never has to guess whether a
half-trained artifact is on disk.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, dict[str, float]], None]
"""`progress(step, total_steps, metrics)`, called after every optimizer step (step from 1)."""
ShouldStop = Callable[[], bool]
"""Polled before every optimizer step; True ends the run with TrainingCancelled."""


class TrainingCancelled(Exception):
    """`should_stop()` answered True between steps: training ended early, nothing was saved."""

    def __init__(
        self,
        message: str = "training cancelled",
        *,
        steps_done: int = 0,
        metrics_per_step: list[dict[str, float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.steps_done = steps_done
        """Optimizer steps completed before the stop."""
        self.metrics_per_step = metrics_per_step if metrics_per_step is not None else []
        """The completed steps' metrics, when the trainer keeps them per step."""


class TrainingDiverged(RuntimeError):
    """A loss, score or gradient stopped being finite; nothing was saved.

    The message says what diverged and at which step (lower the learning rate, check data).
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        metrics_per_step: list[dict[str, float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        """The optimizer step (from 1) at which the value was not finite."""
        self.metrics_per_step = metrics_per_step if metrics_per_step is not None else []
        """The completed steps' metrics, when the trainer keeps them per step."""
