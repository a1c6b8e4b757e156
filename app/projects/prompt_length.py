"""Prompts measured in tokens of the project's tokenizer when they are imported.

The web app reads the tokenizer and model config of the project's base model (a local
directory, the built `tiny` model, or a hub id in the Hugging Face cache, downloaded if
need be) and counts each prompt as the worker will render it (chat template, BOS), with the
same functions (`app.prompt_tokens`). A prompt longer than the model's context less
the project's max new tokens is *too long*: the import names it, and the project's
`long_prompts` setting decides whether sampling shortens it (a conversation's oldest turns
first, then the start) or skips it.

Measuring is best effort: when the tokenizer cannot be read here (a model not built or
downloaded yet, no network, `trust_remote_code`, whose code the web server never runs) the
prompts stay unmeasured (token_count None) and the sampling worker measures them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.models import Project
from app.prompt_tokens import count_prompt_tokens, prompt_budget, token_limit

logger = logging.getLogger(__name__)

TINY = "tiny"
FAILURE_TTL_SECONDS = 600.0
"""A tokenizer that could not be loaded is not tried again for this long (a hub id without
network would otherwise slow every import)."""
MAX_NAMED = 20
"""Too-long prompts named in a warning; the rest are counted."""

_lock = threading.Lock()
_loaded: dict[tuple[str, str], tuple[Any, int | None]] = {}
_failed: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class Measurement:
    """Token counts of some prompts (None: not measurable) against the project's budget."""

    counts: list[int | None]
    context: int | None
    """Tokens the model reads (None: its config does not say)."""
    budget: int | None
    """Tokens a prompt may take: the context less max new tokens (None: no limit known)."""

    def too_long(self, index: int) -> bool:
        count = self.counts[index]
        return count is not None and self.budget is not None and count > self.budget


def tokenizer_source(project: Project) -> str | None:
    """Where the project's tokenizer is read from, or None when it cannot be read here."""
    if project.trust_remote_code:
        return None  # never run a model repository's code in the web server
    if project.base_model == TINY:
        path = get_settings().tiny_model_dir
        return str(path) if (path / "config.json").exists() else None
    return project.base_model


def _cache_key(source: str) -> tuple[str, str]:
    """A local directory is keyed by its config's mtime too: a rebuilt model is read again."""
    config = Path(source) / "config.json"
    try:
        return source, str(config.stat().st_mtime_ns)
    except OSError:
        return source, ""


def _load(source: str) -> tuple[Any, int | None]:
    """(tokenizer, context) of a model from this machine's files only.

    The web process never downloads: an import runs inside a request that holds the project's
    row lock, and an unreachable hub retries for tens of seconds. A model not here yet is
    measured by the sampling worker, which fetches it anyway.
    """
    from transformers import AutoConfig, AutoTokenizer

    token = get_settings().effective_hf_token()
    tokenizer = AutoTokenizer.from_pretrained(source, token=token, local_files_only=True)
    config = AutoConfig.from_pretrained(source, token=token, local_files_only=True)
    return tokenizer, token_limit(tokenizer, None, config)


def project_tokenizer(project: Project) -> tuple[Any, int | None] | None:
    """(tokenizer, context) of the project's base model, or None when it cannot be read."""
    source = tokenizer_source(project)
    if source is None:
        return None
    key = _cache_key(source)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if time.monotonic() - _failed.get(key, -FAILURE_TTL_SECONDS) < FAILURE_TTL_SECONDS:
            return None
        try:
            loaded = _load(source)
        except Exception as exc:  # noqa: BLE001 - any loading problem means "not measured"
            logger.info("prompts of project %s not measured at import: %s", project.id, exc)
            _failed[key] = time.monotonic()
            return None
        _loaded[key] = loaded
        return loaded


def measure(project: Project, contents: Sequence[Any]) -> Measurement | None:
    """Token counts of `contents` (prompt texts or conversations) in the project's tokenizer;
    None when the tokenizer cannot be read here."""
    loaded = project_tokenizer(project)
    if loaded is None:
        return None
    tokenizer, context = loaded
    return Measurement(
        counts=count_prompt_tokens(tokenizer, list(contents)),
        context=context,
        budget=prompt_budget(context, project.max_new_tokens),
    )


def context_of(project: Project) -> int | None:
    """The context of the project's model when its tokenizer can be read here."""
    loaded = project_tokenizer(project)
    return loaded[1] if loaded is not None else None


def forget_loaded() -> None:
    """Drop cached tokenizers and failures (tests; a model rebuilt in place)."""
    with _lock:
        _loaded.clear()
        _failed.clear()
