"""A chat-completions endpoint on loopback for bench/rlaif.py: the simulated judge behind HTTP.

It reads the answers out of the default listwise prompt (worker/judging/prompt.py: `[n]` then
the text, answers separated by a blank line), ranks them with a SimulatedJudge and replies
`RANKING: ...`, so the 'openai' backend's whole path (request, retries, strict parsing) is
timed against a server whose own work is negligible.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.judging.parse import format_ranking
from worker.judging.simulated import SimulatedJudge
from worker.judging.spec import JudgeInput

_ANSWERS = re.compile(r"The answers:\n(.*?)\n\nJudge each answer", re.S)
_LABEL = re.compile(r"^\[(\d+)\]\n", re.M)


def answers_in(prompt: str) -> list[str]:
    """The answers of a prompt rendered from DEFAULT_TEMPLATE, in label order."""
    found = _ANSWERS.search(prompt)
    if found is None:
        return []
    parts = _LABEL.split(found.group(1))  # '', '1', text, '2', text, ...
    return [text.strip() for text in parts[2::2]]


class SimulatedEndpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, judge: SimulatedJudge) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.judge = judge

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedEndpoint

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        texts = answers_in(prompt)
        item = JudgeInput(prompt="", samples=list(enumerate(texts, start=1)), guidelines="")
        content = format_ranking(self.server.judge.judge(item).groups) if texts else "no answers"
        data = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": content}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve(judge: SimulatedJudge) -> Iterator[str]:
    """The endpoint in a daemon thread; yields its base URL (…/v1)."""
    server = SimulatedEndpoint(judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.base_url
    finally:
        server.shutdown()
        server.server_close()
