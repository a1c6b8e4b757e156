"""Model judges: rank a task's samples like an annotator (issue 23). No database access here."""

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
]
