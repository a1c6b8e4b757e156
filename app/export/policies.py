"""A policy version as a directory that loads as is: the LoRA adapter (PeftModel.from_pretrained
on its base model), or with `merged` the full weights (AutoModelForCausalLM.from_pretrained).

A trained version's adapter applies on top of its base with `merged_adapters` merged in; such an
adapter is not loadable on the plain base, so only the merged download is offered for it.
Merged weights are built once (loading the base on this machine) and kept in the artifact store
under exports/, so later downloads stream the stored copy. Loading a model and merging adapters
is the worker's code, which app/ never imports: the process's entry point hands it over
(`use_base_loader`: rankloop/web.py for the served app, the CLI for `policies export`).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.artifacts import get_store
from app.errors import AppError, Conflict, NotFound
from app.models import PolicyKind, PolicyVersion, Project

MANIFEST = "rankloop.json"


class ModelUnavailable(AppError):
    """The weights could not be loaded or merged on this server (missing files, no access)."""

    status_code = 409
    code = "model_unavailable"


READ_CHUNK = 1 << 20


class BaseLoader(Protocol):
    """(model, tokenizer): the base model with the given adapters merged in, in eval mode."""

    def __call__(
        self,
        base_model: str,
        merged_adapter_uris: tuple[str, ...] = (),
        *,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any]: ...


_base_loader: BaseLoader | None = None


def use_base_loader(load: BaseLoader) -> None:
    """Build merged weights with `load` (the worker's `worker.policies.load_base`)."""
    global _base_loader
    _base_loader = load


@dataclass(frozen=True)
class PolicyExport:
    """What to write, read from the database in the request (no ORM objects)."""

    version_id: int
    project_id: int
    number: int
    name: str
    base_model: str
    adapter_uri: str | None
    merged_adapter_uris: tuple[str, ...]
    trust_remote_code: bool
    merged: bool
    round_id: int | None
    parent_id: int | None

    @property
    def dirname(self) -> str:
        return f"policy-{self.project_id}-v{self.number}" + ("-merged" if self.merged else "")

    def manifest(self) -> dict[str, object]:
        load = (
            f"AutoModelForCausalLM.from_pretrained('{self.dirname}')"
            if self.merged
            else f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
            f"{self.base_model!r}), '{self.dirname}') (resize the base's embeddings to "
            "len(tokenizer) first if the tokenizer here has more tokens)"
        )
        return {
            "project_id": self.project_id,
            "policy_version_id": self.version_id,
            "number": self.number,
            "name": self.name,
            "base_model": self.base_model,
            "merged": self.merged,
            "round_id": self.round_id,
            "parent_id": self.parent_id,
            "load": load,
        }


def plan_policy_export(session: Session, *, version_id: int, merged: bool) -> PolicyExport:
    version = session.get(PolicyVersion, version_id)
    if version is None:
        raise NotFound(f"No policy version {version_id}")
    project = session.get(Project, version.project_id)
    assert project is not None
    if version.kind == PolicyKind.external:
        raise Conflict(
            f"Version {version.number} holds samples uploaded from {version.name!r}; "
            "RankLoop has no weights for it"
        )
    chain = tuple(version.metrics.get("merged_adapters", []) or [])
    if not merged and version.artifact_uri is None:
        raise Conflict(
            "This version is the base model itself (no adapter): load "
            f"{version.base_model or project.base_model!r} directly, or pass merged=true "
            "for a copy"
        )
    if not merged and chain:
        raise Conflict(
            f"This version's adapter applies on a base with {len(chain)} adapter(s) merged in "
            "(e.g. the SFT model), so on its own it does not load on the plain base; download "
            "it with merged=true"
        )
    return PolicyExport(
        version_id=version.id,
        project_id=version.project_id,
        number=version.number,
        name=version.name,
        base_model=version.base_model or project.base_model,
        adapter_uri=version.artifact_uri,
        merged_adapter_uris=chain,
        trust_remote_code=project.trust_remote_code,
        merged=merged,
        round_id=version.round_id,
        parent_id=version.parent_id,
    )


@dataclass(frozen=True)
class Materialized:
    directory: Path
    temporary: Path | None
    """A local copy to delete once sent (remote stores, or a freshly merged model)."""


def materialize(export: PolicyExport) -> Materialized:
    """A local directory with the files (merging the weights first when needed)."""
    store = get_store()
    if not export.merged:
        assert export.adapter_uri is not None
        directory = store.local_dir(export.adapter_uri)
        return Materialized(directory, None if store.is_local else directory)
    key = f"exports/policies/{export.version_id}/merged"
    if store.exists(f"{key}/{MANIFEST}"):
        directory = store.local_dir(key)
        return Materialized(directory, None if store.is_local else directory)
    workdir = Path(tempfile.mkdtemp(prefix="rankloop-merge-"))
    try:
        _write_merged(export, workdir)
        store.put_dir(workdir, key)
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ModelUnavailable(
            f"Could not build the merged weights of version {export.number} from "
            f"{export.base_model!r}: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return Materialized(workdir, workdir)


def _write_merged(export: PolicyExport, out_dir: Path) -> None:
    load_base = _base_loader
    if load_base is None:
        raise RuntimeError("this process was given no model loader (use_base_loader)")
    chain = export.merged_adapter_uris + ((export.adapter_uri,) if export.adapter_uri else ())
    model, tokenizer = load_base(
        export.base_model, chain, trust_remote_code=export.trust_remote_code
    )
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / MANIFEST).write_text(json.dumps(export.manifest(), indent=2))


def write_directory(export: PolicyExport, target: Path) -> Path:
    """Copy the version's files into `target` (the CLI's `rankloop policies export`)."""
    files = materialize(export)
    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(files.directory, target, dirs_exist_ok=True)
        (target / MANIFEST).write_text(json.dumps(export.manifest(), indent=2))
    finally:
        if files.temporary is not None:
            shutil.rmtree(files.temporary, ignore_errors=True)
    return target


def tar_stream(export: PolicyExport, files: Materialized) -> Iterator[bytes]:
    """An uncompressed tar of the directory, written as it is read (weights do not compress
    and must not be held in memory)."""
    root = export.dirname
    try:
        manifest = json.dumps(export.manifest(), indent=2).encode()
        yield _header(f"{root}/{MANIFEST}", len(manifest))
        yield manifest + _padding(len(manifest))
        for path in sorted(files.directory.rglob("*")):
            rel = path.relative_to(files.directory).as_posix()
            if not path.is_file() or rel == MANIFEST:
                continue
            size = path.stat().st_size
            yield _header(f"{root}/{rel}", size)
            with path.open("rb") as f:
                while chunk := f.read(READ_CHUNK):
                    yield chunk
            yield _padding(size)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)
    finally:
        if files.temporary is not None:
            shutil.rmtree(files.temporary, ignore_errors=True)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)
