"""Sampling throughput (generated tokens per second) of the generation backends on one model:
'hf' (`generate` in this process), 'openai' against a completions server, and 'vllm' in-process
where CUDA and vllm are present. Every backend runs the same job: the same prompts, n samples
each, the same batches and seeds (`generation_backends.generate_samples`), pure sampling with
no stop strings, so tokens compare like for like.

Without --url, 'openai' talks to the loopback server of the tests (tests/sampling/
openai_server.py: HF `generate` behind HTTP, one request at a time), so on a CPU its figure is
hf's less the HTTP and per-prompt batching costs — what the protocol costs, not what a
serving engine gains. Point --url at a real vLLM/SGLang server serving the same model to
measure that (its --served-model name; the model's tokenizer must be readable here).

    .venv/bin/python -m bench.generation_backends                     # tiny model, CPU
    .venv/bin/python -m bench.generation_backends --model Qwen/Qwen2.5-0.5B-Instruct \\
        --device cuda --prompts 64 --new-tokens 256 --url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import io
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)
console = Console(width=120)


@dataclass
class Figures:
    backend: str
    samples: int
    tokens: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.tokens / self.seconds


def _prompts(n: int) -> list[Any]:
    topics = ["breakfast", "the sky", "cats", "rivers", "bread", "winter", "maps", "bees"]
    return [f"Tell me something about {topics[i % len(topics)]} (#{i})." for i in range(n)]


def _time(name: str, backend: Any, prompts: list[Any], *, n: int, new_tokens: int) -> Figures:
    from worker.generation_backends import generate_samples
    from worker.training.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=new_tokens, stop_strings=[])
    generate_samples(backend, prompts[:2], n_per_prompt=1, settings=settings, seed=1, batch_size=2)
    start = time.perf_counter()
    out = generate_samples(
        backend, prompts, n_per_prompt=n, settings=settings, seed=0, batch_size=16
    )
    seconds = time.perf_counter() - start
    samples = [s for per_prompt in out for s in per_prompt]
    return Figures(name, len(samples), sum(s.n_tokens for s in samples), seconds)


def measure(
    model: str,
    *,
    device: str = "cpu",
    prompts: int = 16,
    n: int = 4,
    new_tokens: int = 48,
    url: str | None = None,
    served_model: str | None = None,
) -> list[Figures]:
    """Tokens per second of each backend this machine can run, hf first."""
    import torch

    from worker.generation_backends.hf import HFBackend
    from worker.generation_backends.openai import OpenAIBackend
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.prompts import context_length

    texts = _prompts(prompts)
    tokenizer = load_tokenizer(model)
    hf_model = load_causal_lm(model).to(device)
    ensure_pad_token(tokenizer, hf_model)
    hf_model.eval()
    rows = [_time("hf", HFBackend(hf_model, tokenizer), texts, n=n, new_tokens=new_tokens)]
    with ExitStack() as stack:
        if url is None:
            from tests.sampling.openai_server import serve

            url, _ = stack.enter_context(serve(Path(model), names=[model]))
            served_model = model
        served = OpenAIBackend(
            base_url=url,
            model_name=served_model or model,
            tokenizer=tokenizer,
            context=context_length(hf_model),
        )
        rows.append(_time("openai", served, texts, n=n, new_tokens=new_tokens))
        served.close()
    del hf_model
    try:
        import vllm  # noqa: F401
    except ImportError:
        return rows
    if torch.cuda.is_available():
        from worker.generation_backends import VersionRef
        from worker.generation_backends.vllm import VLLMBackend

        engine = VLLMBackend(VersionRef(id=0, number=1, base_model=model))
        rows.append(_time("vllm", engine, texts, n=n, new_tokens=new_tokens))
    return rows


def table(rows: list[Figures], title: str) -> Table:
    out = Table(title=title)
    for column in ("backend", "samples", "tokens", "seconds", "tokens/s", "vs hf"):
        out.add_column(column, justify="right")
    for r in rows:
        out.add_row(
            r.backend,
            str(r.samples),
            str(r.tokens),
            f"{r.seconds:.2f}",
            f"{r.per_s:.0f}",
            f"{r.per_s / rows[0].per_s:.2f}x",
        )
    return out


def run_comparison(model: str, **options: Any) -> str:
    """The comparison as text (for bench/distributed.py's report)."""
    rows = measure(model, **options)
    buffer = Console(file=io.StringIO(), width=120)
    buffer.print(table(rows, "Sampling throughput by generation backend"))
    return buffer.file.getvalue()  # type: ignore[attr-defined]


@app.command()
def main(
    model: str | None = typer.Option(None, help="Model id or dir; default: build a tiny one."),
    device: str = typer.Option("cpu", help="Device of the hf backend."),
    threads: int = typer.Option(1, help="torch threads (CPU)."),
    prompts: int = typer.Option(16),
    n: int = typer.Option(4, help="Samples per prompt."),
    new_tokens: int = typer.Option(48, help="max_new_tokens (no stop strings)."),
    url: str | None = typer.Option(None, help="A real completions server's /v1 root."),
    served_model: str | None = typer.Option(None, help="Its name for the model."),
) -> None:
    """Print generated tokens per second of each backend."""
    import torch

    from bench.reward_model import model_or_tiny

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_tiny(model, tmp, steps=100, seed=0)
        rows = measure(
            model,
            device=device,
            prompts=prompts,
            n=n,
            new_tokens=new_tokens,
            url=url,
            served_model=served_model,
        )
    title = f"Sampling throughput, {prompts} prompts x {n}, {new_tokens} new tokens, {device}"
    console.print(table(rows, title))


if __name__ == "__main__":
    app()
