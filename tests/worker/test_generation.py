"""Sampling several responses per prompt: counts, seeds, left padding, EOS, flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.generation import (
    GenerationSettings,
    duplicate_of,
    generate_batch,
    generate_samples,
    is_empty,
    plan_batches,
)
from worker.training.models import load_causal_lm, load_tokenizer

PROMPTS = [
    "How do I make a cup of tea?",
    [{"role": "user", "content": "Tell me a joke."}],
    "Why is the sky blue? Please explain it in a few simple words for a child.",
]
SAMPLING = GenerationSettings(max_new_tokens=12, temperature=1.0)
GREEDY = GenerationSettings(max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> PreTrainedModel:
    return load_causal_lm(str(tiny_model_dir), device="cpu")


@pytest.fixture
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_model_dir))


def test_generate_samples_gives_n_samples_per_prompt_in_prompt_order(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    results = generate_samples(
        model, tokenizer, PROMPTS, n_per_prompt=3, settings=SAMPLING, seed=0, batch_size=4
    )

    assert [len(samples) for samples in results] == [3, 3, 3]
    plan = plan_batches(3, n_per_prompt=3, batch_size=4, seed=0)
    assert [len(rows) for _, rows in plan] == [4, 4, 1]
    # Every sample names its batch seed and row, and those point back at its prompt.
    for p, samples in enumerate(results):
        for sample in samples:
            rows = dict(plan)[sample.seed]
            assert rows[sample.index] == p
    assert all(0 < s.n_tokens <= SAMPLING.max_new_tokens for g in results for s in g)


def test_same_seed_regenerates_identical_samples(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    def run(seed: int) -> list[list[str]]:
        results = generate_samples(
            model, tokenizer, PROMPTS, n_per_prompt=2, settings=SAMPLING, seed=seed, batch_size=3
        )
        return [[s.text for s in g] for g in results]

    first = run(0)

    assert run(0) == first
    assert run(1) != first


def test_a_batch_regenerates_from_a_samples_recorded_seed_and_index(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    results = generate_samples(
        model, tokenizer, PROMPTS, n_per_prompt=3, settings=SAMPLING, seed=5, batch_size=4
    )
    target = results[1][2]  # second prompt, third sample
    rows = dict(plan_batches(3, n_per_prompt=3, batch_size=4, seed=5))[target.seed]

    again = generate_batch(
        model, tokenizer, [PROMPTS[p] for p in rows], settings=SAMPLING, seed=target.seed
    )

    assert again[target.index] == target


def test_left_padding_gives_the_same_greedy_text_as_generating_alone(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    short, long = "Hi", PROMPTS[2]
    assert len(tokenizer(short)["input_ids"]) < len(tokenizer(long)["input_ids"])

    alone = generate_batch(model, tokenizer, [short], settings=GREEDY, seed=0)[0]
    padded = generate_batch(model, tokenizer, [long, short], settings=GREEDY, seed=0)[1]

    assert padded.token_ids == alone.token_ids
    assert padded.text == alone.text


def test_generation_stops_at_eos_and_strips_it(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    # Make "." the EOS token: the tiny model ends sentences often, so some rows stop
    # early while others run to max_new_tokens in the same batch.
    tokenizer.eos_token = "."
    settings = GenerationSettings(max_new_tokens=30, temperature=1.0)

    results = generate_samples(
        model, tokenizer, PROMPTS, n_per_prompt=4, settings=settings, seed=0, batch_size=12
    )
    samples = [s for group in results for s in group]

    finished = [s for s in samples if s.finished]
    assert finished, "expected at least one sample to emit EOS"
    for s in finished:
        assert s.token_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.eos_token_id not in s.token_ids[:-1]
        assert s.n_tokens == len(s.token_ids) < settings.max_new_tokens
        assert "." not in s.text
        assert tokenizer.pad_token not in s.text
    for s in samples:
        if not s.finished:
            assert s.n_tokens == settings.max_new_tokens


def test_generation_refuses_a_pad_token_equal_to_eos(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    tokenizer.pad_token = tokenizer.eos_token

    with pytest.raises(ValueError, match="ensure_pad_token"):
        generate_batch(model, tokenizer, ["Hi"], settings=SAMPLING, seed=0)


def test_settings_default_to_pure_sampling_and_validate() -> None:
    assert GenerationSettings().is_pure_sampling
    assert GenerationSettings().top_k == 0
    assert not GenerationSettings(top_p=0.9).is_pure_sampling
    with pytest.raises(ValueError, match="top_p"):
        GenerationSettings(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)


def test_is_empty_flags_whitespace_only_text() -> None:
    assert is_empty("")
    assert is_empty(" \n\t")
    assert not is_empty(" ok ")


def test_duplicate_of_points_at_the_first_equal_sample() -> None:
    texts = ["Yes.", "No.", " yes. ", "no.", "Maybe", "YES."]

    assert duplicate_of(texts) == [None, None, 0, 1, None, 0]
