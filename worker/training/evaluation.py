"""Measurements the promotion gate needs: fresh samples, and KL of a policy to its reference.

KL is estimated on the policy's own samples as E[Σ_t log π(a_t) − log π_ref(a_t)] (the k1
estimator PPO logs), with both log-probs on temperature-scaled logits (training notes §PPO 4).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from worker.training.generation import GeneratedSample, GenerationSettings, generate_samples
from worker.training.losses import logprobs_from_logits
from worker.training.models import encode_prompt, format_prompt


def sample_once(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 16,
    stop_strings: list[str] | None = None,
) -> list[GeneratedSample]:
    """One pure sample per prompt (top_k 0, top_p 1): what the policy itself would say,
    ending where annotators' samples end (`stop_strings` as in GenerationSettings)."""
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=1.0,
        top_k=0,
        stop_strings=stop_strings,
    )
    generated = generate_samples(
        model,
        tokenizer,
        list(prompts),
        n_per_prompt=1,
        settings=settings,
        seed=seed,
        batch_size=batch_size,
    )
    return [g[0] for g in generated]


@torch.no_grad()
def _response_logprobs(
    model: Any, prompt_ids: list[int], response_ids: list[int], temperature: float
) -> torch.Tensor:
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + response_ids], device=device)  # (1, P+R)
    logits = model(input_ids=ids).logits[:, :-1]  # (1, P+R-1, V)
    logprobs = logprobs_from_logits(logits, ids[:, 1:], temperature=temperature)  # (1, P+R-1)
    return logprobs[0, len(prompt_ids) - 1 :]  # (R,) log-probs of the response tokens


@torch.no_grad()
def mean_kl_to_reference(
    peft_model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    samples: Sequence[GeneratedSample],
    *,
    temperature: float,
) -> float:
    """Mean per-sequence KL of the adapter-enabled policy to the same model with it disabled."""
    total = 0.0
    for prompt, sample in zip(prompts, samples, strict=True):
        if not sample.token_ids:
            continue
        # The prompt as generation fed it (shortened when it did not fit the context).
        prompt_ids = sample.prompt_ids or encode_prompt(tokenizer, format_prompt(tokenizer, prompt))
        policy = _response_logprobs(peft_model, prompt_ids, sample.token_ids, temperature)
        with peft_model.disable_adapter():
            reference = _response_logprobs(peft_model, prompt_ids, sample.token_ids, temperature)
        total += float((policy - reference).sum())
    return total / max(len(samples), 1)


def paired_bootstrap_interval(
    before: Sequence[float],
    after: Sequence[float],
    *,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval (two-sided `confidence`) of mean(after - before), resampling the
    pairs (prompts).

    Pairing by prompt removes the spread between easy and hard prompts from the interval.
    """
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    if not diffs:
        raise ValueError("no pairs to compare")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    tail = (1 - confidence) / 2
    return means[int(tail * rounds)], means[int((1 - tail) * rounds) - 1]


def length_correlation(scores: Sequence[float], texts: Sequence[str]) -> float | None:
    """Pearson correlation of scores with lengths in words: near 1, the scorer mostly rewards
    length (a classic way PPO games a reward model). None when either does not vary."""
    lengths = [float(len(t.split())) for t in texts]
    if len(scores) < 3 or len(set(lengths)) < 2 or len(set(scores)) < 2:
        return None
    return statistics.correlation(list(scores), lengths)
