"""An empty Hugging Face token is no token: `HF_TOKEN=` (docker compose's `${HF_TOKEN:-}`, or a
blank line in .env) must not become `Authorization: Bearer `, which HTTP clients refuse before
the request is sent, so every hub download failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.config import Settings
from worker.training.models import _hub_token


@pytest.mark.parametrize("empty", ["", " ", "\n"])
def test_an_empty_token_is_none_in_the_settings_and_the_loader(
    monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    monkeypatch.setenv("HF_TOKEN", empty)
    monkeypatch.setenv("RANKLOOP_HF_TOKEN", empty)
    assert Settings().hf_token is None
    assert Settings().effective_hf_token() is None
    assert Settings(hf_token=empty).effective_hf_token() is None
    assert _hub_token(empty) is None
    assert _hub_token(None) is None
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert Settings().effective_hf_token() == "hf_from_env"
    assert _hub_token(empty) == "hf_from_env"  # an empty argument falls back, as None does
    assert Settings(hf_token="hf_setting").effective_hf_token() == "hf_setting"
    assert _hub_token("hf_given") == "hf_given"


class _Hub(BaseHTTPRequestHandler):
    """Stands in for the hub: records each request's path and Authorization header, and
    answers that the repository does not exist."""

    seen: list[tuple[str, str | None]] = []

    def _answer(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"error": "Repository not found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    _Hub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


_LOAD = """
from app.config import get_settings
from worker.policies import load_base
from worker.training.models import load_causal_lm, load_tokenizer

for name, load in [
    ("load_base", lambda: load_base("rankloop-test/empty-token")),
    ("load_causal_lm", lambda: load_causal_lm(
        "rankloop-test/empty-token-lm", device="cpu", token=get_settings().effective_hf_token())),
    ("control", lambda: load_tokenizer("rankloop-test/control", token="hf_control")),
]:
    try:
        load()
    except Exception as exc:
        print(name, type(exc).__name__, str(exc).splitlines()[0][:200], flush=True)
"""


def test_an_empty_hf_token_sends_no_authorization_header(hub: str, tmp_path: Path) -> None:
    """The real loading code in a process set up as a container with `HF_TOKEN=` is, against a
    loopback server in the hub's place: requests leave, and none carries a token; the control
    load with a token shows the header would be seen."""
    env = {
        **os.environ,
        "HF_TOKEN": "",
        "RANKLOOP_HF_TOKEN": "",
        "HF_ENDPOINT": hub,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "RANKLOOP_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, timeout=180
    )
    assert "Illegal header" not in result.stdout + result.stderr, result.stdout
    empty = [(path, auth) for path, auth in _Hub.seen if "empty-token" in path]
    control = [(path, auth) for path, auth in _Hub.seen if "control" in path]
    assert {p.split("/")[-1] for p, _ in empty}, f"no request reached the hub: {result.stdout}"
    assert any("empty-token-lm" in p for p, _ in empty), result.stdout
    assert [auth for _, auth in empty if auth is not None] == [], empty
    assert control, "the control load sent nothing"
    assert all(auth == "Bearer hf_control" for _, auth in control), control
