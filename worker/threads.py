"""How many CPU threads torch uses in a process that samples or trains.

torch picks its own count, which ignores both the cores this process may use (taskset,
container cpusets) and how many worker processes share them; sampling ran 4-6x slower with
the wrong count (issue 17). Every entry point that runs models calls `configure_torch_threads`.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def torch_threads(processes: int = 1, *, threads: int | None = None) -> int:
    """The thread count to use: `threads` when given, else RANKLOOP_TORCH_THREADS, else the
    available cores shared evenly by `processes` worker processes (at least 1)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if threads is None:
        from app.config import get_settings

        threads = get_settings().torch_threads
    if threads is None:
        threads = available_cores() // processes
    return max(1, threads)


def configure_torch_threads(processes: int = 1, *, threads: int | None = None) -> int:
    """Set torch's intra-op thread count (`torch_threads`) and return it."""
    import torch

    count = torch_threads(processes, threads=threads)
    torch.set_num_threads(count)
    return count
