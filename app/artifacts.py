"""The one place artifacts (checkpoints, adapters, exports) are read and written.

The store is a local path by default; with workers on several machines it is a shared volume or
an fsspec URL (s3://…, gs://…). Training code works on local directories, so a directory is
uploaded after it is written (`put_dir`) and downloaded before it is read (`get_dir`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

import fsspec

from app.config import get_settings


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols

    def uri(self, key: str) -> str:
        """Stored in the database: the key relative to the store, never an absolute path."""
        return str(PurePosixPath(_clean(key)))

    def _path(self, key: str) -> str:
        return f"{self._root_path}/{_clean(key)}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(data)
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open(self._path(key), "rb") as f:
            return bytes(f.read())

    def put_dir(self, local_dir: Path, key: str) -> str:
        """Copy a finished local directory into the store (replacing what was there)."""
        dest = self._path(key)
        if self.fs.exists(dest):
            self.fs.rm(dest, recursive=True)
        self.fs.makedirs(dest, exist_ok=True)
        for file in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            rel = file.relative_to(local_dir).as_posix()
            target = f"{dest}/{rel}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(file), target)
        return self.uri(key)

    def local_dir(self, key: str) -> Path:
        """A local directory holding the artifact: the store itself when local, else a copy."""
        if self.is_local:
            return Path(self._path(key))
        target = Path(tempfile.mkdtemp(prefix="rankloop-artifact-"))
        self.fs.get(self._path(key) + "/", str(target), recursive=True)
        return target

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.fs.rm(self._path(key), recursive=True)


def _clean(key: str) -> str:
    parts = [p for p in PurePosixPath(key).parts if p not in ("", ".", "/")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"invalid artifact key {key!r}")
    return "/".join(parts)


def get_store() -> ArtifactStore:
    return ArtifactStore(get_settings().effective_artifact_store)


__all__ = ["ArtifactStore", "get_store"]
