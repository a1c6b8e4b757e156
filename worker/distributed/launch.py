"""Run a training stage as N processes under torchrun and watch it from the Celery task.

The task keeps every database write in its own process: it writes the stage's inputs to a
payload directory, starts `python -m torch.distributed.run --standalone --nproc_per_node N -m
worker.distributed.entry <entry> <payload_dir>` in a new session (so the whole group can be
signalled at once), and polls. On Linux torchrun dies with the task's process and each rank
with torchrun (PR_SET_PDEATHSIG): a worker killed with SIGKILL leaves no orphan on the device.
Rank 0's progress lines become the round's progress; a cancel kills the group and raises
RoundCancelled; a rank exiting non-zero makes torchrun stop the others, and the task raises
DistributedStageFailed naming that rank and its error. Nothing is registered unless rank 0's
result.json is there and every process exited 0. The payload directory is the worker's,
temporary; a failed run's copy is kept in the artifact store beside the stage's outputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from worker.distributed.entry import (
    ERRORS_DIR,
    LAUNCHER_PID_ENV,
    PIDS_DIR,
    PROGRESS_FILE,
    RESULT_FILE,
    die_with_parent,
)
from worker.failures import RoundCancelled

logger = logging.getLogger(__name__)
LOG_FILE = "torchrun.log"
KILL_GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when the group is stopped."""


class DistributedStageFailed(RuntimeError):
    """A rank of a distributed stage failed; the message names the rank and its error (a
    RuntimeError, so that a rank's "out of memory" reads as one in the round's failure)."""


def torchrun_command(entry: str, payload_dir: Path, *, procs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(procs),
        "-m",
        "worker.distributed.entry",
        entry,
        str(payload_dir),
    ]


def child_env(*, cuda: bool) -> dict[str, str]:
    """The children's environment: this one, the repository importable, this process's pid
    (each rank checks it is still in its tree), and on CPU one OpenMP thread per process
    unless set (N processes each using every core would fight)."""
    env = dict(os.environ)
    env[LAUNCHER_PID_ENV] = str(os.getpid())
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if not cuda:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_distributed(
    entry: str,
    payload_dir: Path,
    *,
    procs: int,
    on_progress: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
    poll_s: float = 1.0,
    keep_failed_as: str | None = None,
) -> dict[str, Any]:
    """Run `entry` on `procs` processes; return rank 0's result.json.

    `on_progress(line)` gets each progress line rank 0 wrote; `should_cancel()` is asked every
    poll, and True stops every process and raises RoundCancelled. With `keep_failed_as` (an
    artifact key beside the stage's outputs) a failed run's payload directory (payload, log,
    progress, errors) is copied there and the failure names it; a run that succeeds removes
    what an earlier failed attempt left there."""
    if procs < 1:
        raise ValueError(f"procs must be >= 1, got {procs}")
    payload_dir = Path(payload_dir)
    for stale in (PROGRESS_FILE, RESULT_FILE, LOG_FILE):
        (payload_dir / stale).unlink(missing_ok=True)
    for stale_dir in (ERRORS_DIR, PIDS_DIR):
        shutil.rmtree(payload_dir / stale_dir, ignore_errors=True)
    (payload_dir / PROGRESS_FILE).touch()

    import torch

    launcher = os.getpid()
    with open(payload_dir / LOG_FILE, "wb") as log:
        child = subprocess.Popen(
            torchrun_command(entry, payload_dir, procs=procs),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(cuda=torch.cuda.is_available()),
            start_new_session=True,  # its own process group, signalled as one
            # SIGKILLed, this process forwards nothing: torchrun dies with it (Linux), and
            # each rank with torchrun (entry.py), for no rank starts in torchrun's group
            preexec_fn=lambda: die_with_parent(expected_parent=launcher),
        )
        try:
            with open(payload_dir / PROGRESS_FILE) as lines:
                while True:
                    rc = child.poll()
                    _relay(lines, on_progress)
                    if rc is not None:
                        break
                    if should_cancel():
                        stop_group(child)
                        raise RoundCancelled
                    time.sleep(poll_s)
        finally:
            if child.poll() is None:  # an error above (or in on_progress): no orphans
                stop_group(child)
    result_path = payload_dir / RESULT_FILE
    if rc != 0 or not result_path.exists():
        line = failure_line(payload_dir, rc)
        kept = None if keep_failed_as is None else keep_failed_run(payload_dir, keep_failed_as)
        raise DistributedStageFailed(
            line if kept is None else f"{line} (its payload and logs: {kept} in the artifact store)"
        )
    if keep_failed_as is not None:
        from app.artifacts import get_store

        get_store().delete(keep_failed_as)
    return dict(json.loads(result_path.read_text()))


def keep_failed_run(payload_dir: Path, key: str) -> str | None:
    """Copy a failed run's payload directory into the artifact store at `key`: the worker's
    local copy is temporary, this one is there to diagnose from (any worker, any store). Its
    uri, or None when the copy itself failed (logged: the stage's own failure matters more)."""
    from app.artifacts import get_store

    try:
        return get_store().put_dir(payload_dir, key)
    except Exception:
        logger.exception("could not keep the failed run's files at %s", key)
        return None


def stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM torchrun's process group (torchrun passes it to each rank, which torch starts
    in a session of its own), then SIGKILL (the ranks die with torchrun: their death signal)."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # torchrun gone; anything left in its group goes too
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return  # (a rank, in a session of its own, got SIGKILL as its agent died)


def failure_line(payload_dir: Path, rc: int | None) -> str:
    """One line: the first rank that reported an error and its error; else the rank torchrun
    names (killed by a signal, out of memory) with the last line of the log."""
    errors = sorted(
        (payload_dir / ERRORS_DIR).glob("rank-*.txt"), key=lambda p: p.stat().st_mtime
    ) if (payload_dir / ERRORS_DIR).exists() else []
    if errors:
        rank = errors[0].stem.removeprefix("rank-")
        return f"distributed stage failed on rank {rank}: {errors[0].read_text().strip()}"
    log = (payload_dir / LOG_FILE).read_text(errors="replace") if (
        payload_dir / LOG_FILE
    ).exists() else ""
    ranks = re.findall(r"rank\s*:\s*(\d+)", log)
    tail = [line.strip() for line in log.splitlines() if line.strip()][-1:] or [""]
    who = f"rank {ranks[0]}" if ranks else "a rank"
    if rc == 0:
        return f"distributed stage ended without rank 0's result ({tail[0]})"
    return f"distributed stage failed on {who} (exit code {rc}): {tail[0]}"


def _relay(lines: IO[str], on_progress: Callable[[dict[str, Any]], None]) -> None:
    """Pass on each complete progress line written since the last poll."""
    while True:
        at = lines.tell()
        line = lines.readline()
        if not line.endswith("\n"):  # none, or one still being written
            lines.seek(at)
            return
        on_progress(json.loads(line))
