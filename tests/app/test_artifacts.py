"""The artifact store round-trips directories on a local path and on a non-local fsspec URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.artifacts import ArtifactStore


def _make_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "adapter.bin").write_bytes(b"\x00\x01weights")
    (root / "sub" / "config.json").write_text('{"r": 8}')
    return root


@pytest.mark.parametrize("url_kind", ["local", "memory"])
def test_put_dir_then_local_dir_gives_the_same_files(tmp_path: Path, url_kind: str) -> None:
    root = str(tmp_path / "store") if url_kind == "local" else f"memory://rl-{tmp_path.name}"
    store = ArtifactStore(root)
    source = _make_dir(tmp_path / "src")
    uri = store.put_dir(source, "projects/1/policies/v2")
    assert uri == "projects/1/policies/v2"
    assert store.exists(uri)
    copy = store.local_dir(uri)
    assert (copy / "adapter.bin").read_bytes() == b"\x00\x01weights"
    assert (copy / "sub" / "config.json").read_text() == '{"r": 8}'
    assert store.is_local is (url_kind == "local")


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ValueError, match="invalid artifact key"):
        store.write_bytes("../outside", b"x")


def test_write_and_read_bytes(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    store.write_bytes("exports/a.jsonl", b'{"a": 1}\n')
    assert store.read_bytes("exports/a.jsonl") == b'{"a": 1}\n'
    store.delete("exports/a.jsonl")
    assert not store.exists("exports/a.jsonl")
