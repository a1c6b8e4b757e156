"""A small OpenAI-compatible completions server over a local model, on loopback, for tests and
the bench: what a team's vLLM server answers, with `faults` to make it fail on purpose."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from worker.training.generation import cut_at_stop, end_token_ids
from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer


@dataclass
class ServerState:
    model: Any
    tokenizer: Any
    names: list[str]
    api_key: str | None = None
    faults: deque[str] = field(default_factory=deque)
    """What the next requests do instead of answering: "500", or "sleep:SECONDS"."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """n samples of one prompt (token ids) under the request's seed."""
        ids = torch.tensor([body["prompt"]], dtype=torch.long)
        n, temperature = int(body.get("n", 1)), float(body.get("temperature", 1.0))
        stops = list(body.get("stop") or [])
        end_ids = [*end_token_ids(self.tokenizer), *body.get("stop_token_ids", [])]
        with self.lock, torch.no_grad():
            torch.manual_seed(int(body.get("seed", 0)))
            sampling = {"temperature": temperature, "top_p": float(body.get("top_p", 1.0))}
            output = self.model.generate(
                input_ids=ids.repeat(n, 1),
                attention_mask=torch.ones((n, ids.shape[1]), dtype=torch.long),
                max_new_tokens=int(body["max_tokens"]),
                do_sample=temperature > 0,
                top_k=0,
                num_return_sequences=1,
                eos_token_id=end_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                **(sampling if temperature > 0 else {}),
            )
        choices = []
        for i, row in enumerate(output[:, ids.shape[1] :].tolist()):
            row = [t for t in row if t != self.tokenizer.pad_token_id]
            ended = bool(row) and row[-1] in end_ids
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            cut = cut_at_stop(text, stops)
            reason = "stop" if ended or cut != text else "length"
            choices.append({"index": i, "text": cut, "finish_reason": reason})
        return {"object": "text_completion", "model": body["model"], "choices": choices}


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except BrokenPipeError:  # the client gave up waiting (a timeout test)
                pass

        def _authorised(self) -> bool:
            state.headers.append(dict(self.headers))
            if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                self._send(401, {"error": {"message": "bad key"}})
                return False
            return True

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": "not found"}})
            elif self._authorised():
                self._send(200, {"data": [{"id": name} for name in state.names]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.rstrip("/") == "/v1/load_lora_adapter" and self._authorised():
                # As vLLM with runtime LoRA updating: the adapter must be readable here.
                if (Path(body["lora_path"]) / "adapter_config.json").is_file():
                    state.names.append(body["lora_name"])
                    self._send(200, {"loaded": body["lora_name"]})
                else:
                    self._send(400, {"error": {"message": "no adapter there"}})
                return
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            if not self._authorised():
                return
            state.requests.append(body)
            fault = state.faults.popleft() if state.faults else None
            if fault == "500":
                self._send(500, {"error": {"message": "engine died"}})
                return
            if fault and fault.startswith("sleep:"):
                time.sleep(float(fault.split(":")[1]))
            if body["model"] not in state.names:
                self._send(404, {"error": {"message": f"no model {body['model']}"}})
                return
            self._send(200, state.complete(body))

    return Handler


@contextmanager
def serve(
    model_dir: Path, *, names: list[str], api_key: str | None = None
) -> Iterator[tuple[str, ServerState]]:
    """(base URL ending in /v1, state) of a server on a free loopback port, for the block."""
    tokenizer = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir))
    ensure_pad_token(tokenizer, model)
    model.eval()
    state = ServerState(model=model, tokenizer=tokenizer, names=names, api_key=api_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
