"""The 'openai' backend against a real chat-completions server on loopback.

The server plays a script: each request takes the next reply (status, content, headers,
delay), so retries, backoff and timeouts are exercised over real HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from worker.judging import make_judge
from worker.judging.openai import RateLimiter
from worker.judging.spec import (
    EndpointUnavailable,
    JudgeError,
    JudgeInput,
    JudgeSpec,
    MalformedOutput,
)

KEY = "sk-test-3f9a1c0ffee-secret"
ITEM = JudgeInput(
    prompt="Name a fruit.",
    samples=[(101, "Apple."), (102, "A rock."), (103, "Banana, a sweet fruit.")],
    guidelines="Prefer correct, complete answers.",
)


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    authorization: str | None
    body: dict[str, Any]
    at: float


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[Reply] = []
        self.default = Reply(status=500)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_reply(self) -> Reply:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self.server.seen.append(Seen(self.headers.get("Authorization"), body, time.monotonic()))
        reply = self.server.next_reply()
        if reply.delay:
            time.sleep(reply.delay)
        payload = (
            {"choices": [{"message": {"role": "assistant", "content": reply.content}}]}
            if reply.status == 200
            else {"error": {"message": "scripted failure"}}
        )
        data = json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def spec_for(server: ScriptedServer, **overrides: Any) -> JudgeSpec:
    values: dict[str, Any] = {
        "backend": "openai",
        "model": "judge-model",
        "method": "listwise",
        "prompt_template": "",
        "principles": ["Be correct"],
        "base_url": server.base_url,
        "api_key": KEY,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "options": {"backoff_s": 0.05, "max_wait_s": 2.0},
    }
    values.update(overrides)
    return JudgeSpec(**values)


def test_scripted_ranking_maps_labels_to_sample_ids_and_sends_the_key_in_the_header(
    server: ScriptedServer,
) -> None:
    server.script = [Reply("Banana is best; a rock is no fruit.\nRANKING: 3 > 1 > 2")]
    verdict = make_judge(spec_for(server)).judge(ITEM)
    assert verdict.groups == [[103], [101], [102]]
    assert verdict.attempts == 1
    assert verdict.raw is not None
    assert verdict.raw.endswith("RANKING: 3 > 1 > 2")
    (seen,) = server.seen
    assert seen.authorization == f"Bearer {KEY}"
    assert seen.body["model"] == "judge-model"
    assert seen.body["temperature"] == 0
    assert seen.body["max_tokens"] > 0
    prompt = seen.body["messages"][0]["content"]
    assert "[3]\nBanana, a sweet fruit." in prompt
    assert KEY not in json.dumps(seen.body)


def test_malformed_answer_is_asked_again_with_the_reason_and_attempts_counted(
    server: ScriptedServer,
) -> None:
    server.script = [Reply("I like the first one."), Reply("RANKING: 1 = 3 > 2.")]
    verdict = make_judge(spec_for(server)).judge(ITEM)
    assert verdict.groups == [[101, 103], [102]]
    assert verdict.attempts == 2
    retry = server.seen[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[1]["content"] == "I like the first one."
    assert "RANKING" in retry[2]["content"]


def test_always_malformed_raises_after_max_attempts(server: ScriptedServer) -> None:
    server.default = Reply("RANKING: 1 > 2")  # sample 3 left out, every time
    with pytest.raises(MalformedOutput, match="leaves out") as caught:
        make_judge(spec_for(server, max_attempts=2)).judge(ITEM)
    assert caught.value.attempts == 2
    assert len(server.seen) == 2


def test_429_waits_for_retry_after_then_succeeds(server: ScriptedServer) -> None:
    server.script = [Reply(status=429, headers={"Retry-After": "1"}), Reply("RANKING: 2 > 1 > 3")]
    verdict = make_judge(spec_for(server)).judge(ITEM)
    assert verdict.groups == [[102], [101], [103]]
    first, second = server.seen
    assert second.at - first.at >= 0.95  # Retry-After honoured, not the 0.05 s backoff


def test_retry_after_is_capped(server: ScriptedServer) -> None:
    server.script = [Reply(status=503, headers={"Retry-After": "3600"}), Reply("RANKING: 1>2>3")]
    spec = spec_for(server, options={"backoff_s": 0.05, "max_wait_s": 0.2})
    started = time.monotonic()
    assert make_judge(spec).judge(ITEM).groups == [[101], [102], [103]]
    assert time.monotonic() - started < 2.0


def test_slow_reply_times_out_and_is_retried(server: ScriptedServer) -> None:
    server.script = [Reply("RANKING: 1 > 2 > 3", delay=1.5), Reply("RANKING: 3 > 2 > 1")]
    verdict = make_judge(spec_for(server, timeout_s=0.5)).judge(ITEM)
    assert verdict.groups == [[103], [102], [101]]  # the second, timely answer
    assert len(server.seen) == 2


def test_always_500_is_unavailable_after_backoff_and_the_key_never_leaks(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EndpointUnavailable) as caught:
        make_judge(spec_for(server, max_attempts=3)).judge(ITEM)
    assert len(server.seen) == 3
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:], strict=False)]
    assert gaps[0] >= 0.04
    assert gaps[1] >= 0.09  # exponential: 0.05 then 0.1
    assert "HTTP 500" in str(caught.value)
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert KEY not in caplog.text
    assert caplog.records  # the retries were logged, without the key


def test_unreachable_endpoint_is_unavailable(server: ScriptedServer) -> None:
    url = server.base_url
    server.shutdown()
    server.server_close()
    spec = spec_for(server, base_url=url, max_attempts=2)
    with pytest.raises(EndpointUnavailable, match="could not connect"):
        make_judge(spec).judge(ITEM)


def test_refused_key_is_a_judge_error_without_retries_or_key(server: ScriptedServer) -> None:
    server.default = Reply(status=401)
    with pytest.raises(JudgeError, match="HTTP 401") as caught:
        make_judge(spec_for(server)).judge(ITEM)
    assert not isinstance(caught.value, EndpointUnavailable)
    assert len(server.seen) == 1
    assert KEY not in str(caught.value)


def test_spec_repr_hides_the_key(server: ScriptedServer) -> None:
    assert KEY not in repr(spec_for(server))


def test_pairwise_asks_each_pair_in_both_orders_and_aggregates(server: ScriptedServer) -> None:
    quality = {"Apple.": 1, "A rock.": 0, "Banana, a sweet fruit.": 2}

    def winner(body: dict[str, Any]) -> str:
        prompt = body["messages"][0]["content"]
        a = prompt.split("[A]\n")[1].split("\n\n")[0]
        b = prompt.split("[B]\n")[1].split("\n\n")[0]
        return "A" if quality[a] > quality[b] else "B"

    # Script every reply from the request it answers.
    original = server.next_reply

    def next_reply() -> Reply:
        return Reply(f"WINNER: {winner(server.seen[-1].body)}")

    server.next_reply = next_reply  # type: ignore[method-assign]
    verdict = make_judge(spec_for(server, method="pairwise")).judge(ITEM)
    server.next_reply = original  # type: ignore[method-assign]
    assert verdict.groups == [[103], [101], [102]]
    assert len(server.seen) == 6
    assert verdict.attempts == 6


def test_logprob_is_refused_for_an_endpoint(server: ScriptedServer) -> None:
    with pytest.raises(ValueError, match="logprob"):
        make_judge(spec_for(server, method="logprob"))


def test_rate_limiter_spaces_requests_across_threads() -> None:
    limiter = RateLimiter(requests_per_minute=600)  # one every 0.1 s
    starts: list[float] = []
    lock = threading.Lock()

    def go() -> None:
        limiter.acquire()
        with lock:
            starts.append(time.monotonic())

    threads = [threading.Thread(target=go) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert starts[-1] - starts[0] >= 0.39


def test_judges_on_one_base_url_share_its_rate_limit(server: ScriptedServer) -> None:
    server.default = Reply("RANKING: 1 > 2 > 3")
    first = make_judge(spec_for(server, requests_per_minute=300))  # 0.2 s apart
    second = make_judge(spec_for(server, requests_per_minute=300))
    threads = [threading.Thread(target=j.judge, args=(ITEM,)) for j in (first, second, first)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(s.at for s in server.seen)
    assert times[-1] - times[0] >= 0.35


def test_harm_flags_come_back_by_sample_id_when_asked(server: ScriptedServer) -> None:
    server.script = [Reply("HARMFUL: 2 (tells you to eat a rock)\nRANKING: 3 > 1 > 2")]
    verdict = make_judge(spec_for(server, flag_harm=True)).judge(ITEM)
    assert verdict.harmful == {102: "tells you to eat a rock"}
    assert "HARMFUL:" in server.seen[0].body["messages"][0]["content"]
