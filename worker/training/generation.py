"""Sampling several responses per prompt, reproducibly, for annotators and for PPO rollouts.

Rows are laid out prompt-major ((p0, s0), (p0, s1), ..., (p1, s0), ...) and cut into
batches of `batch_size` rows. Batch b is sampled under its own seed
`batch_seed(seed, b)`, which every sample records together with its row `index` in the
batch: calling `generate_batch` on the same rows with that seed gives the same texts on
the same device. Prompts are LEFT-padded (the new tokens must follow the prompt directly)
with an attention mask; `generate` derives position ids from that mask.

Every distribution-changing option is passed explicitly, because `generate` otherwise
fills gaps from the checkpoint's generation_config and from library defaults (top_k=50):
RLHF_NOTES.md, PPO point 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.models import encode_prompt, forked_rng, format_prompt

Prompt = str | list[dict[str, str]]


@dataclass
class GenerationSettings:
    """How to sample. The defaults are pure sampling, the setting PPO rollouts need."""

    max_new_tokens: int = 128
    """Upper bound on generated tokens; a sample that hits it is `finished=False`."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (no randomness, seeds irrelevant)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps the whole distribution."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 disables (transformers would default to 50)."""
    repetition_penalty: float = 1.0
    """>1 discourages repeats. For annotator samples only: it breaks PPO's log-probs."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def is_pure_sampling(self) -> bool:
        """True when samples follow the model's distribution (what PPO log-probs assume)."""
        return (
            self.temperature > 0
            and self.top_p == 1.0
            and self.top_k == 0
            and self.repetition_penalty == 1.0
        )


@dataclass
class GeneratedSample:
    """One response. `seed` and `index` identify the batch and row that produced it."""

    text: str
    """Decoded response before the first EOS, special tokens removed, whitespace-stripped."""
    token_ids: list[int]
    """Generated token ids up to and including the first EOS (no padding)."""
    n_tokens: int
    """len(token_ids): tokens the model produced, EOS included when it stopped."""
    finished: bool
    """True when the model emitted EOS within max_new_tokens."""
    seed: int
    """Seed of the batch this sample was drawn in."""
    index: int
    """Row of this sample inside its batch."""


def batch_seed(seed: int, batch: int) -> int:
    """Seed of batch number `batch` of a run seeded with `seed` (distinct per batch)."""
    return (seed * 1_000_003 + batch) % (2**63)


def _pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, P)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, P)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def _sampling_kwargs(settings: GenerationSettings) -> dict[str, float | int]:
    """Warper options for sampling; greedy decoding takes none (passing them only warns)."""
    if settings.temperature == 0:
        return {}
    return {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "typical_p": 1.0,
        "min_p": 0.0,
        "epsilon_cutoff": 0.0,
        "eta_cutoff": 0.0,
    }


@torch.no_grad()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    settings: GenerationSettings,
    seed: int,
) -> list[GeneratedSample]:
    """Sample one response per row of `prompts` in a single `generate` call under `seed`.

    This is the unit of reproducibility: the same rows, settings, seed and device give
    the same texts. Repeat a prompt in `prompts` to get several samples of it.
    """
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token, so samples could never finish")
    if pad_id is None or pad_id == eos_id:
        raise ValueError("the pad token must exist and differ from EOS: call ensure_pad_token")
    rows = [encode_prompt(tokenizer, format_prompt(tokenizer, p)) for p in prompts]
    input_ids, attention_mask = _pad_left(rows, pad_id)  # (B, P), (B, P)
    device = model.device
    with forked_rng(device):
        torch.manual_seed(seed)
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            do_sample=settings.temperature > 0,
            repetition_penalty=settings.repetition_penalty,
            # Neutralise anything a checkpoint's generation_config could switch on.
            num_beams=1,
            num_return_sequences=1,
            min_new_tokens=0,
            no_repeat_ngram_size=0,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            **_sampling_kwargs(settings),
        )
    new_tokens = output[:, input_ids.shape[1] :].cpu()  # (B, N)

    samples = []
    for i, row in enumerate(new_tokens.tolist()):
        finished = eos_id in row
        token_ids = row[: row.index(eos_id) + 1] if finished else row
        body = token_ids[:-1] if finished else token_ids
        text = tokenizer.decode(body, skip_special_tokens=True).strip()
        samples.append(
            GeneratedSample(
                text=text,
                token_ids=token_ids,
                n_tokens=len(token_ids),
                finished=finished,
                seed=seed,
                index=i,
            )
        )
    return samples


def plan_batches(
    n_prompts: int, *, n_per_prompt: int, batch_size: int, seed: int
) -> list[tuple[int, list[int]]]:
    """The (batch seed, prompt index of each row) of every batch `generate_samples` runs."""
    rows = [p for p in range(n_prompts) for _ in range(n_per_prompt)]
    return [
        (batch_seed(seed, b), rows[start : start + batch_size])
        for b, start in enumerate(range(0, len(rows), batch_size))
    ]


def generate_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    n_per_prompt: int,
    settings: GenerationSettings,
    seed: int,
    batch_size: int,
) -> list[list[GeneratedSample]]:
    """`n_per_prompt` samples for each prompt, grouped by prompt in input order."""
    if n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[list[GeneratedSample]] = [[] for _ in prompts]
    plan = plan_batches(len(prompts), n_per_prompt=n_per_prompt, batch_size=batch_size, seed=seed)
    for b_seed, prompt_indices in plan:
        batch = generate_batch(
            model, tokenizer, [prompts[p] for p in prompt_indices], settings=settings, seed=b_seed
        )
        for p, sample in zip(prompt_indices, batch, strict=True):
            results[p].append(sample)
    return results


# Flags shown to annotators ---------------------------------------------------------------


def is_empty(text: str) -> bool:
    """A response with nothing but whitespace: annotators cannot rank it meaningfully."""
    return not text.strip()


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def duplicate_of(texts: list[str]) -> list[int | None]:
    """For each text, the index of the first earlier text equal to it, else None.

    Equality ignores case and whitespace runs, so "Yes." and " yes. " are duplicates:
    asking annotators to order identical answers only produces noise.
    """
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        key = _normalise(text)
        out.append(first.get(key))
        first.setdefault(key, i)
    return out
