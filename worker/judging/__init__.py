"""Model judges: rank a task's samples like an annotator (issue 23). No database access here.

`make_judge(spec)` picks the backend; local models are loaded once per process and kept (the
last few), since a judging run calls many items on the same model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from worker.judging.spec import (
    EndpointUnavailable,
    Judge,
    JudgeError,
    JudgeInput,
    JudgeSpec,
    MalformedOutput,
    Verdict,
)

__all__ = [
    "EndpointUnavailable",
    "Judge",
    "JudgeError",
    "JudgeInput",
    "JudgeSpec",
    "MalformedOutput",
    "Verdict",
    "make_judge",
]

LOCAL_CACHE_SIZE = 2
"""Local models kept loaded; a worker alternating between more judges reloads."""

_local: OrderedDict[tuple[str, bool], tuple[Any, Any]] = OrderedDict()
_local_lock = threading.Lock()


def _load_local(model: str, trust_remote_code: bool) -> tuple[Any, Any]:
    """(model, tokenizer) loaded as policies are (worker.policies.load_base), cached."""
    key = (model, trust_remote_code)
    with _local_lock:
        if key in _local:
            _local.move_to_end(key)
            return _local[key]
        from worker.policies import load_base

        loaded = load_base(model, trust_remote_code=trust_remote_code)
        _local[key] = loaded
        while len(_local) > LOCAL_CACHE_SIZE:
            _local.popitem(last=False)
        return loaded


def clear_cache() -> None:
    """Forget loaded local models (tests, or a worker freeing memory)."""
    with _local_lock:
        _local.clear()


def make_judge(spec: JudgeSpec) -> Judge:
    """The judge for a spec; ValueError when the spec cannot work (e.g. logprob on 'openai')."""
    if spec.backend == "simulated":
        from worker.judging.simulated import SimulatedJudge

        return SimulatedJudge.from_spec(spec)
    if spec.backend == "openai":
        from worker.judging.openai import OpenAIJudge

        return OpenAIJudge(spec)
    from worker.judging.local import LocalJudge

    model, tokenizer = _load_local(spec.model, bool(spec.options.get("trust_remote_code", False)))
    return LocalJudge(spec, model, tokenizer)
