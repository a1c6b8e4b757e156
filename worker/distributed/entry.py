"""What each of the N processes runs: `python -m worker.distributed.entry <entry> <payload_dir>`.

torchrun starts this once per rank. It joins the group, runs the registered entry on the
payload the stage wrote, and rank 0 writes `result.json`. A failing rank writes one line to
`errors/rank-<r>.txt` and exits non-zero; torchrun then stops the others and the launcher
turns that line into the stage's failure. Entries register with `@entry("name")` in their own
module, imported by `load_entries`: reward_model, sft and dpo in training_entries, ppo,
rloo and grpo in policy_entries.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.distributed.context import DistContext, init_from_env, shutdown

Entry = Callable[[DistContext, Path], dict[str, Any]]
ENTRIES: dict[str, Entry] = {}
"""Registered entries by name: reward_model, sft, dpo, ppo, rloo, grpo."""

PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"
ERRORS_DIR = "errors"
PIDS_DIR = "pids"
_ENTRY_MODULES = ("worker.distributed.training_entries", "worker.distributed.policy_entries")
LAUNCHER_PID_ENV = "RANKLOOP_LAUNCHER_PID"
"""The pid of the process that started torchrun: a rank whose agent is no longer that
process's child was orphaned while it started, and ends itself."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent dies (Linux)."""
DIE_AT_STEP_ENV = "RANKLOOP_TEST_DIE_AT_STEP"
"""Test hook: the rank named by RANKLOOP_TEST_DIE_RANK (default 1) raises at this step."""


def entry(name: str) -> Callable[[Entry], Entry]:
    """Register `fn(ctx, payload_dir) -> result` under `name`."""

    def register(fn: Entry) -> Entry:
        ENTRIES[name] = fn
        return fn

    return register


def load_entries() -> dict[str, Entry]:
    """Import the modules that register entries (one not written yet is skipped)."""
    for module in _ENTRY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return ENTRIES


def progress(ctx: DistContext, payload_dir: Path, **fields: Any) -> None:
    """Rank 0 appends one JSON line (e.g. step, total, metrics) that the launcher relays to
    the round's progress and heartbeat; other ranks do nothing. A `step` field also passes
    the test hook that kills a rank."""
    if "step" in fields:
        _maybe_die(ctx, int(fields["step"]))
    if not ctx.is_main:
        return
    line = json.dumps({"time": time.time(), **fields}, default=float)
    with open(Path(payload_dir) / PROGRESS_FILE, "a") as f:
        f.write(line + "\n")


def read_payload(payload_dir: Path) -> dict[str, Any]:
    """The stage's inputs (payload.json), as the stage wrote them."""
    return dict(json.loads((Path(payload_dir) / "payload.json").read_text()))


def write_payload(payload_dir: Path, payload: dict[str, Any]) -> None:
    Path(payload_dir).mkdir(parents=True, exist_ok=True)
    (Path(payload_dir) / "payload.json").write_text(json.dumps(payload))


def die_with_parent(*, expected_parent: int | None = None) -> bool:
    """Have Linux SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG), so a
    worker killed with SIGKILL, which can forward nothing, leaves no torchrun agent or rank
    behind. If the parent is already not `expected_parent`, it died first: die now. False
    (nothing set) off Linux, where a killed worker can still orphan the group."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def _die_with_agent() -> None:
    """A rank dies with its torchrun agent (which itself dies with the launcher). The agent
    may die while this rank starts, before the death signal is set: then the rank's parent
    is no longer the launcher's child, and the rank ends itself."""
    die_with_parent()
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if launcher and sys.platform.startswith("linux") and parent_of(os.getppid()) != int(launcher):
        os.kill(os.getpid(), signal.SIGKILL)


def parent_of(pid: int) -> int | None:
    """`pid`'s parent from /proc (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": ppid


def _maybe_die(ctx: DistContext, step: int) -> None:
    at = os.environ.get(DIE_AT_STEP_ENV)
    if at and int(at) == step and ctx.rank == int(os.environ.get("RANKLOOP_TEST_DIE_RANK", "1")):
        raise RuntimeError(f"test hook: rank {ctx.rank} dies at step {step}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m worker.distributed.entry <entry> <payload_dir>", file=sys.stderr)
        return 2
    _die_with_agent()
    name, payload_dir = argv[0], Path(argv[1])
    rank = int(os.environ.get("RANK", "0"))
    pids = payload_dir / PIDS_DIR  # which processes a stage is: to find them, or see them gone
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"rank-{rank}").write_text(str(os.getpid()))
    try:
        # Run as __main__, this file is a second copy of the module: entries register with
        # the one their modules import.
        from worker.distributed import entry as registry

        entries = registry.load_entries()
        if name not in entries:
            raise KeyError(f"no distributed entry {name!r}; known: {sorted(entries)}")
        ctx = init_from_env()
        result = entries[name](ctx, payload_dir)
        if ctx.is_main:
            tmp = payload_dir / f"{RESULT_FILE}.tmp"
            tmp.write_text(json.dumps(result, default=str))
            tmp.replace(payload_dir / RESULT_FILE)  # whole or absent
        shutdown()
        return 0
    except BaseException as exc:  # every failure is reported as one line, then exit 1
        traceback.print_exc()
        line = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        errors = payload_dir / ERRORS_DIR
        errors.mkdir(parents=True, exist_ok=True)
        (errors / f"rank-{rank}.txt").write_text(line + "\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
