"""The 'openai' backend: any OpenAI-compatible chat-completions endpoint (vLLM, TGI,
llama.cpp, hosted services).

Transient failures (timeouts, connection errors, 429, 5xx) are retried with exponential
backoff, honouring Retry-After up to a cap; after max_attempts the item fails with
EndpointUnavailable. Requests to one base URL share a rate limiter and a concurrency limit
within the process. The key goes only in the Authorization header: errors name the endpoint
and the status, never the key, the headers or the response body.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from worker.judging.methods import Retry, judge_listwise, judge_pairs
from worker.judging.spec import (
    EndpointUnavailable,
    JudgeError,
    JudgeInput,
    JudgeSpec,
    MalformedOutput,
    Verdict,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_MAX_TOKENS = 512
DEFAULT_BACKOFF_S = 1.0
"""First retry waits this long, then twice as long each time (options['backoff_s'])."""
DEFAULT_MAX_WAIT_S = 30.0
"""Cap on any one wait, Retry-After included (options['max_wait_s'])."""


@dataclass
class RateLimiter:
    """Spaces request starts at least 60/requests_per_minute seconds apart (thread-safe)."""

    requests_per_minute: int
    _next: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 60.0 / self.requests_per_minute
        if start > now:
            time.sleep(start - now)


@dataclass
class Endpoint:
    """What every judge calling one base URL shares in this process."""

    limiter: RateLimiter | None = None
    slots: threading.BoundedSemaphore | None = None


_ENDPOINTS: dict[str, Endpoint] = {}
_ENDPOINTS_LOCK = threading.Lock()


def endpoint_for(
    base_url: str, requests_per_minute: int | None, concurrency: int | None
) -> Endpoint:
    """The shared limits of a base URL. The rate is the latest a judge asked for (an edited
    setting takes effect without a worker restart); the concurrency is fixed at first use."""
    key = base_url.rstrip("/")
    with _ENDPOINTS_LOCK:
        shared = _ENDPOINTS.setdefault(key, Endpoint())
        if requests_per_minute is not None:
            if shared.limiter is None:
                shared.limiter = RateLimiter(requests_per_minute)
            shared.limiter.requests_per_minute = requests_per_minute
        if concurrency is not None and shared.slots is None:
            shared.slots = threading.BoundedSemaphore(concurrency)
        return shared


def retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIJudge:
    """Listwise or pairwise judging through POST {base_url}/chat/completions."""

    def __init__(self, spec: JudgeSpec, client: httpx.Client | None = None) -> None:
        if not spec.base_url:
            raise ValueError("an 'openai' judge needs a base_url")
        if spec.method == "logprob":
            raise ValueError("method 'logprob' needs a local model (backend 'hf')")
        self.spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        options = spec.options
        self.backoff_s = float(options.get("backoff_s", DEFAULT_BACKOFF_S))
        self.max_wait_s = float(options.get("max_wait_s", DEFAULT_MAX_WAIT_S))
        concurrency = options.get("concurrency")
        self.endpoint = endpoint_for(
            spec.base_url,
            spec.requests_per_minute,
            None if concurrency is None else int(concurrency),
        )
        self.client = client or httpx.Client(timeout=spec.timeout_s)

    def judge(self, item: JudgeInput) -> Verdict:
        if self.spec.method == "pairwise":
            return judge_pairs(self.spec, item, self.complete)
        return judge_listwise(self.spec, item, self.complete)

    def complete(self, prompt: str, retry: Retry | None) -> str:
        """The assistant's reply; a retry shows the model its previous answer and the problem."""
        messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
        if retry is not None:
            messages += [
                {"role": "assistant", "content": retry.previous},
                {
                    "role": "user",
                    "content": f"That answer could not be read: {retry.reason}. "
                    "Answer again, ending with the line in the exact format asked for.",
                },
            ]
        body = {
            "model": self.spec.model,
            "messages": messages,
            "temperature": float(self.spec.options.get("temperature", 0.0)),
            "max_tokens": int(
                self.spec.options.get(
                    "max_tokens", self.spec.options.get("max_new_tokens", DEFAULT_MAX_TOKENS)
                )
            ),
        }
        return _content(self._post(body))

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}
        reason = ""
        for attempt in range(1, self.spec.max_attempts + 1):
            wait: float | None = None
            try:
                response = self._send(body, headers)
            except httpx.TimeoutException:
                reason = f"timed out after {self.spec.timeout_s:g} s"
            except httpx.TransportError as exc:
                reason = f"could not connect ({type(exc).__name__})"
            else:
                if response.status_code < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise MalformedOutput("the endpoint's reply is not JSON") from None
                if response.status_code not in RETRY_STATUSES:
                    raise JudgeError(f"{self.url} refused the request: HTTP {response.status_code}")
                reason = f"HTTP {response.status_code}"
                wait = retry_after_s(response)
            if attempt == self.spec.max_attempts:
                break
            delay = min(
                self.max_wait_s, wait if wait is not None else self.backoff_s * 2 ** (attempt - 1)
            )
            log.warning("judge endpoint %s: %s; retrying in %.2f s", self.url, reason, delay)
            time.sleep(delay)
        raise EndpointUnavailable(
            f"{self.url} unavailable after {self.spec.max_attempts} attempts: {reason}"
        )

    def _send(self, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        if self.endpoint.limiter is not None:
            self.endpoint.limiter.acquire()
        if self.endpoint.slots is None:
            return self.client.post(self.url, json=body, headers=headers)
        with self.endpoint.slots:
            return self.client.post(self.url, json=body, headers=headers)


def _content(reply: Any) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedOutput("the endpoint's reply has no choices[0].message.content") from None
    if not isinstance(content, str):
        raise MalformedOutput("the endpoint's reply content is not text")
    return content
