"""Run one benchmark setting in a process of its own, so its peak memory is its own."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.context import BaseContext
from typing import Any


def _call_and_send(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_in_process(fn: Callable[..., Any], *args: Any, preload: Sequence[str] = ()) -> Any:
    """`fn(*args)` in a new process; its result, or a RuntimeError carrying its traceback.

    A process and a pipe rather than a one-worker Pool: a Pool's queues hold semaphores that
    the resource tracker reports as leaked at exit. With `preload`, processes are forked from
    a server that imported those modules once (torch and transformers take seconds to
    import), instead of being spawned afresh; the server never touches CUDA.
    """
    context: BaseContext
    if preload:
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["__main__", *preload])
    else:
        context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(send, fn, args))
    process.start()
    send.close()
    try:
        status, payload = receive.recv()
    except EOFError:
        status, payload = "error", f"the process died (exit code {process.exitcode})"
    process.join()
    if status != "ok":
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed in its process:\n{payload}")
    return payload
