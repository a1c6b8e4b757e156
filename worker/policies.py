"""Turning a policy version's description (base model + optional adapter) into a loaded model.

Plain functions, no database: callers pass what they read from it.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import get_settings

TINY = "tiny"


@dataclass(frozen=True)
class PolicySpec:
    """What the database says about a version: enough to load it on any worker."""

    version_id: int
    base_model: str
    adapter_uri: str | None = None
    trust_remote_code: bool = False
    merged_adapter_uris: tuple[str, ...] = ()
    """Adapters merged into the base, in order, before `adapter_uri` applies (e.g. SFT)."""


def ensure_tiny_model(
    path: Path | None = None, *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Build the offline demo model once; concurrent callers wait on a file lock.

    The build reports its steps in a status file beside the model (app/preparation.py), so
    the pages and the demo's console say what the first minutes are spent on."""
    from app import preparation

    path = path or get_settings().tiny_model_dir
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").exists():
            preparation.write_model_status(path)  # before the imports, which take seconds
            building = path.with_name(path.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            try:
                from worker.training.tiny_model import make_tiny_model

                make_tiny_model(building, progress=_reporting(path, progress))
            except Exception as exc:
                preparation.write_model_status(path, error=f"{type(exc).__name__}: {exc}")
                raise
            shutil.rmtree(path, ignore_errors=True)
            building.rename(path)  # atomic: a half-built model is never loaded
            preparation.clear_model_status(path)
    return path


def _reporting(
    path: Path, progress: Callable[[int, int], None] | None, *, every: float = 1.0
) -> Callable[[int, int], None]:
    """`progress`, and the build's status file at most every `every` seconds (and at the end)."""
    from app import preparation

    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        if progress is not None:
            progress(done, total)
        if done == total or time.monotonic() - last >= every:
            preparation.write_model_status(path, done=done, total=total)
            last = time.monotonic()

    return report


def resolve_base_model(name: str) -> str:
    """A hub id or local directory as given; "tiny" means the locally built demo model."""
    return str(ensure_tiny_model()) if name == TINY else name


def load_base(
    base_model: str, merged_adapter_uris: tuple[str, ...] = (), *, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """(model, tokenizer): the base with a distinct pad token and the given adapters merged in."""
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer

    settings = get_settings()
    base = resolve_base_model(base_model)
    token = settings.effective_hf_token()
    tokenizer = load_tokenizer(base, trust_remote_code=trust_remote_code, token=token)
    model = load_causal_lm(base, trust_remote_code=trust_remote_code, token=token)
    ensure_pad_token(tokenizer, model)
    for uri in merged_adapter_uris:
        model = merge_adapter(model, uri)
    model.eval()
    return model, tokenizer


def merge_adapter(model: Any, adapter_uri: str) -> Any:
    from peft import PeftModel

    from app.artifacts import get_store

    adapter_dir = get_store().local_dir(adapter_uri)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def load_policy_for_generation(spec: PolicySpec) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode; the version's adapter is merged for faster generation."""
    chain = spec.merged_adapter_uris + ((spec.adapter_uri,) if spec.adapter_uri else ())
    return load_base(spec.base_model, chain, trust_remote_code=spec.trust_remote_code)
