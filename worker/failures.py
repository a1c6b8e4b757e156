"""A worker's exception as a product says it: one line with what failed and what to do (the
round's or sampling job's `error`), and the traceback without server paths (`error_detail`,
which admins may expand). The full traceback also goes to the worker's log, where the task
re-raises it.
"""

from __future__ import annotations

import errno
import traceback
from dataclasses import dataclass

from app.server_paths import strip_server_paths


class RoundCancelled(Exception):
    """The admin cancelled the round; the stage stops between steps (here, apart from the
    stages, so the distributed launcher can raise it without importing them)."""

MAX_LINE = 400
MAX_DETAIL = 20000
_OUR_PACKAGES = ("app", "worker", "rankloop")
_LOADERS = {
    "from_pretrained",
    "load_base",
    "load_causal_lm",
    "load_tokenizer",
    "load_reward_model",
    "load_policy_for_generation",
    "merge_adapter",
    "hf_hub_download",
    "snapshot_download",
    "cached_file",
    "cached_files",
}
_HUB_ERRORS = {
    "RepositoryNotFoundError",
    "GatedRepoError",
    "RevisionNotFoundError",
    "EntryNotFoundError",
    "LocalEntryNotFoundError",
    "RemoteEntryNotFoundError",
    "OfflineModeIsEnabled",
    "HFValidationError",
}


@dataclass(frozen=True)
class Failure:
    line: str
    """One line: what failed and what to do."""
    detail: str
    """The traceback (chained exceptions included), server paths stripped."""


def describe(exc: BaseException, *, doing: str, lower: str, retry: str) -> Failure:
    """`doing`: what the worker was doing ("training the reward model"); `lower`: the settings
    that take less memory ("the batch size"); `retry`: what to do after fixing it."""
    return Failure(
        line=_one_line(_line(exc, doing=doing, lower=lower, retry=retry)),
        detail=traceback_text(exc),
    )


def traceback_text(exc: BaseException) -> str:
    text = strip_server_paths("".join(traceback.format_exception(exc)))
    if len(text) > MAX_DETAIL:  # the end says most: where it was raised, and why
        text = "…(earlier frames left out)\n" + text[-MAX_DETAIL:]
    return text


def _line(exc: BaseException, *, doing: str, lower: str, retry: str) -> str:
    chain = _chain(exc)
    reason = _reason(exc).rstrip(".")
    if any(_is_out_of_memory(e) for e in chain):
        return f"Out of memory while {doing} — lower {lower}, or use a larger GPU; then {retry}"
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain):
        return (
            f"The worker ran out of disk space while {doing} — free space in the data and "
            f"temporary directories; then {retry}"
        )
    if any(type(e).__name__ in _HUB_ERRORS for e in chain) or _raised_while_loading(exc):
        if _only_adapters(exc):
            return (
                f"A trained adapter could not be loaded while {doing}: {reason} — check that "
                "every worker reads the same artifact store (RANKLOOP_ARTIFACT_STORE); then "
                f"{retry}"
            )
        return (
            f"The base model could not be loaded while {doing}: {reason} — check the project's "
            "base model (a Hugging Face id, or a directory the workers can read), HF_TOKEN, and "
            f"whether the workers can reach the hub; then {retry}"
        )
    if any(type(e).__name__ == "OperationalError" for e in chain):
        return f"The database could not be reached while {doing} — check it is up; then {retry}"
    if isinstance(exc, IndexError) and "index out of range in self" in str(exc):
        return (
            f"A text longer than the model's context reached it while {doing} — shorten the "
            f"project's longest prompts or lower max new tokens; then {retry}"
        )
    if _ours(exc):  # our own refusals already say what is missing and what to do
        return _reason(exc)
    return (
        f"Unexpected error while {doing} ({type(exc).__name__}: {reason}) — {retry}; if it "
        "happens again, report it with the error details"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [frame for e in _chain(exc) for frame in traceback.extract_tb(e.__traceback__)]


def _raised_while_loading(exc: BaseException) -> bool:
    return any(frame.name in _LOADERS for frame in _frames(exc))


def _only_adapters(exc: BaseException) -> bool:
    """Loading failed inside peft (an adapter), not inside transformers (the base)."""
    loading = [
        strip_server_paths(f.filename).split("/", 1)[0]
        for f in _frames(exc)
        if f.name == "from_pretrained"
    ]
    return "peft" in loading and "transformers" not in loading


def _ours(exc: BaseException) -> bool:
    """Raised by our own code with a message for the admin (a ValueError or an AppError)."""
    from app.errors import AppError

    if not isinstance(exc, ValueError | AppError) or not str(exc).strip():
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    where = strip_server_paths(frames[-1].filename)
    return where.split("/", 1)[0] in _OUR_PACKAGES


def _reason(exc: BaseException) -> str:
    """The first line of the exception's message (its type's name when it has none)."""
    message = str(getattr(exc, "message", None) or exc).strip()
    return next((line.strip() for line in message.splitlines() if line.strip()), "") or (
        type(exc).__name__
    )


def _one_line(text: str) -> str:
    text = " ".join(strip_server_paths(text).split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"
