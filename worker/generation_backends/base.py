"""What every generation backend does: one batch of rows under one seed, as `generate_batch`.

The batches themselves are planned once, by `sample_in_batches` (`plan_batches`): rows
prompt-major, cut into `batch_size` rows, batch b under `batch_seed(seed, b)`. A backend only
turns one batch into one sample per row, recording that batch seed and the row's index, so
the same seeds give the same prompts-to-samples mapping (prompt, batch seed, row) whichever
backend wrote the texts. The texts themselves differ between engines: kernels and samplers
differ, so only the mapping, never the bytes, is portable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.training.generation import GeneratedSample, GenerationSettings, sample_in_batches
from worker.training.prompts import Prompt, prompt_key

KINDS = ("hf", "openai", "vllm")


class BackendUnavailable(RuntimeError):
    """The backend itself cannot generate (server down, CUDA or vllm missing, key unset):
    no prompt is at fault, so the job fails at once with this one line."""


@dataclass(frozen=True)
class BackendConfig:
    """A project's generation settings, read once at the start of a job."""

    kind: str = "hf"
    """'hf', 'openai' or 'vllm'."""
    base_url: str | None = None
    """The OpenAI-compatible server's root, e.g. http://vllm:8000/v1 ('openai' only)."""
    model: str | None = None
    """The served model's name, else the base model's ('openai' only)."""
    api_key_env: str | None = None
    """Name of the worker's environment variable holding the server's key (never the key)."""


@dataclass(frozen=True)
class VersionRef:
    """The policy version to sample: what the database says about it."""

    id: int
    number: int
    base_model: str
    adapter_uri: str | None = None
    merged_adapter_uris: tuple[str, ...] = ()
    trust_remote_code: bool = False

    @property
    def adapter_name(self) -> str:
        """The name a server knows this version's LoRA adapter by (`--lora-modules`)."""
        return f"rankloop-v{self.number}"


class GenerationBackend(Protocol):
    """Writes one sample per row of a batch under one seed (`generate_batch`'s contract)."""

    tokenizer: Any
    """The policy's tokenizer: prompts are rendered and measured with it on every backend."""

    def budget(self, settings: GenerationSettings) -> int | None:
        """Tokens a prompt may take with max_new_tokens after it (None: no known limit)."""
        ...

    def generate(
        self, prompts: list[Prompt], settings: GenerationSettings, *, seed: int
    ) -> list[GeneratedSample]:
        """One sample per row of `prompts`, each recording `seed` and its row index."""
        ...


def row_groups(prompts: Sequence[Prompt]) -> list[tuple[int, int]]:
    """(first row, count) of each run of equal consecutive rows: one request of n = count
    samples each. Rows are prompt-major, so a prompt's rows in a batch are one run."""
    groups: list[tuple[int, int]] = []
    previous: str | None = None
    for i, prompt in enumerate(prompts):
        key = prompt_key(prompt)
        if groups and key == previous:
            start, count = groups[-1]
            groups[-1] = (start, count + 1)
        else:
            groups.append((i, 1))
        previous = key
    return groups


def generate_samples(
    backend: GenerationBackend,
    prompts: list[Prompt],
    *,
    n_per_prompt: int,
    settings: GenerationSettings,
    seed: int,
    batch_size: int,
) -> list[list[GeneratedSample]]:
    """`n_per_prompt` samples for each prompt, grouped by prompt in input order: the batches
    and seeds of `worker.training.generation.generate_samples`, any backend."""
    return sample_in_batches(
        lambda rows, b_seed: backend.generate(rows, settings, seed=b_seed),
        prompts,
        n_per_prompt=n_per_prompt,
        seed=seed,
        batch_size=batch_size,
    )
