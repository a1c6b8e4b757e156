"""A prompt longer than the tiny model's context (256 tokens) in every stage: generation, the
reward model, PPO, SFT and DPO left-truncate it the same way (its end kept behind a "…"
marker) instead of indexing past the position embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.generation import GenerationSettings, generate_batch, generation_budget
from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
from worker.training.prompts import (
    TRUNCATION_MARKER,
    context_length,
    count_prompt_tokens,
    fit_prompt_ids,
    marker_ids,
    prompt_token_ids,
    token_limit,
    truncate_left,
)

CONTEXT = 256
"""The tiny model's n_positions."""
LONG = "Tell me everything about " + "the old stone bridge and the river under it, " * 300
"""About 3,000 tokens of the tiny tokenizer; the question at its end must survive."""
QUESTION = "Why is the sky blue?"
LONG_PROMPT = LONG + QUESTION


def load(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    model = load_causal_lm(str(path), device="cpu")
    tokenizer = load_tokenizer(str(path))
    ensure_pad_token(tokenizer, model)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load(tiny_model_dir)


def test_the_long_prompt_is_far_longer_than_the_context(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    assert context_length(model) == CONTEXT
    (count,) = count_prompt_tokens(tokenizer, [LONG_PROMPT])
    assert count is not None
    assert count > 10 * CONTEXT


# The one rule ----------------------------------------------------------------------------


def test_truncation_keeps_the_end_behind_the_marker(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    _, tokenizer = tiny
    full = prompt_token_ids(tokenizer, LONG_PROMPT)

    cut = fit_prompt_ids(tokenizer, LONG_PROMPT, 100)

    marker = marker_ids(tokenizer)
    assert len(cut) == 100
    assert cut[: len(marker)] == marker
    assert cut[len(marker) :] == full[-(100 - len(marker)) :]
    text = tokenizer.decode(cut)
    assert text.startswith(TRUNCATION_MARKER)
    assert text.endswith(QUESTION + "\nAssistant:")


def test_a_prompt_that_fits_is_left_alone_and_bos_stays_first() -> None:
    class Tokenizer:
        bos_token_id = 1

        def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
            return {"input_ids": [9, 9]}

    ids = [1, 10, 11, 12, 13, 14, 15]
    assert truncate_left(Tokenizer(), ids, 7) == ids
    assert truncate_left(Tokenizer(), ids, None) == ids
    assert truncate_left(Tokenizer(), ids, 5) == [1, 9, 9, 14, 15]
    assert truncate_left(Tokenizer(), ids, 2) == [14, 15]  # no room for the marker


def test_limits_are_the_smallest_known(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    assert token_limit(tokenizer, 512, model) == CONTEXT
    assert token_limit(tokenizer, 64, model) == 64
    tokenizer_without_limit = load_tokenizer(str(model.name_or_path))
    tokenizer_without_limit.model_max_length = int(1e30)
    assert token_limit(tokenizer_without_limit, None) is None
    ensure_pad_token(tokenizer_without_limit, model)  # learns the model's context
    assert token_limit(tokenizer_without_limit, None) == CONTEXT


# Sampling (annotation samples, the gate) -------------------------------------------------


def test_generation_samples_an_over_long_prompt_from_its_end(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=16, temperature=1.0)

    samples = generate_batch(model, tokenizer, [LONG_PROMPT, QUESTION], settings=settings, seed=0)

    assert len(samples) == 2
    long, short = samples
    budget = CONTEXT - 16
    assert long.prompt_ids is not None
    assert len(long.prompt_ids) == budget
    assert long.prompt_ids[: len(marker_ids(tokenizer))] == marker_ids(tokenizer)
    assert tokenizer.decode(long.prompt_ids).endswith(QUESTION + "\nAssistant:")
    assert short.prompt_ids == prompt_token_ids(tokenizer, QUESTION)  # untouched
    assert generation_budget(model, tokenizer, settings) == budget


def test_max_new_tokens_filling_the_context_is_a_clear_error(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=CONTEXT)
    with pytest.raises(ValueError, match="leaves no room for a prompt"):
        generate_batch(model, tokenizer, [QUESTION], settings=settings, seed=0)


# Reward model ----------------------------------------------------------------------------


def test_reward_model_trains_and_scores_with_an_over_long_prompt(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from worker.training.reward_model import (
        RankingExample,
        RewardModelConfig,
        encode_responses,
        load_reward_model,
        score,
        train_reward_model,
    )
    from worker.training.tiny_model import synthetic_rankings

    examples = [RankingExample(p, r, g) for p, r, g in synthetic_rankings(8, k=4, seed=1)]
    examples[0] = RankingExample(LONG_PROMPT, examples[0].responses, examples[0].groups)
    examples[5] = RankingExample(LONG_PROMPT + " Again?", examples[5].responses, examples[5].groups)
    config = RewardModelConfig(epochs=1, batch_size=4, heldout_fraction=0.25, max_length=512)

    result = train_reward_model(str(tiny_model_dir), examples, config, out_dir=tmp_path / "rm")

    tokenizer = load_tokenizer(str(tmp_path / "rm"))
    rows = encode_responses(tokenizer, LONG_PROMPT, ["Yes.", "No, not at all."], max_length=512)
    assert all(len(row) <= CONTEXT for row in rows)
    prefix = len(rows[0]) - len(tokenizer(" Yes.", add_special_tokens=False)["input_ids"])
    assert rows[0][:prefix] == rows[1][:prefix]  # one prompt, cut once for every response
    assert rows[0][: len(marker_ids(tokenizer))] == marker_ids(tokenizer)
    rm = load_reward_model(tmp_path / "rm")
    scores = score(rm, tokenizer, [LONG_PROMPT, QUESTION], ["Yes.", "Yes."], max_length=512)
    assert all(torch.isfinite(torch.tensor(scores)))
    assert result.epochs


# PPO -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_rolls_out_an_over_long_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.ppo import PPOConfig, train_ppo

    tokenizer = load_tokenizer(str(tiny_model_dir))
    config = PPOConfig(
        steps=1, batch_size=4, mini_batch_size=4, max_new_tokens=12, lr=5e-5, seed=0, device="cpu"
    )  # max_prompt_length 512: more than the context, so the context decides
    seen: list[str] = []

    def score_fn(prompts: list, responses: list[str]) -> list[float]:
        seen.extend(responses)
        return [0.0] * len(responses)

    result = train_ppo(
        str(tiny_model_dir),
        tokenizer,
        [LONG_PROMPT, QUESTION],
        score_fn,
        config,
        out_dir=tmp_path / "ppo",
    )

    assert len(seen) == config.batch_size
    assert result.final is not None


def test_ppo_rollout_prompts_fit_the_context(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    from worker.training.ppo import PPOConfig, rollout_prompt_limit

    model, tokenizer = tiny
    assert rollout_prompt_limit(model, tokenizer, PPOConfig(max_new_tokens=12)) == CONTEXT - 12
    config = PPOConfig(max_new_tokens=12, max_prompt_length=100)
    assert rollout_prompt_limit(model, tokenizer, config) == 100


# SFT and DPO -----------------------------------------------------------------------------


def test_sft_trains_on_an_over_long_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.sft import Demonstration, SFTConfig, encode_example, train_sft

    model, tokenizer = load(tiny_model_dir)
    demos = [Demonstration(f"Say hello number {i}.", f"Hello {i}!") for i in range(6)]
    demos.append(Demonstration(LONG_PROMPT, "Because of the air."))
    config = SFTConfig(epochs=1, batch_size=4, max_length=512, heldout_fraction=0.25)

    result = train_sft(model, tokenizer, demos, config, out_dir=tmp_path / "sft")

    assert result.final is not None
    ids, n_prompt = encode_example(tokenizer, LONG_PROMPT, "Because of the air.", max_length=512)
    assert len(ids) == CONTEXT
    assert ids[: len(marker_ids(tokenizer))] == marker_ids(tokenizer)
    answer = tokenizer(" Because of the air.", add_special_tokens=False)["input_ids"]
    assert ids[n_prompt:] == [*answer, tokenizer.eos_token_id]  # the answer is whole


def test_sft_packs_rows_no_longer_than_the_context(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.sft import Demonstration, SFTConfig, train_sft

    model, tokenizer = load(tiny_model_dir)
    demos = [Demonstration(f"Say hello number {i}.", f"Hello {i}!") for i in range(6)]
    demos.append(Demonstration(LONG_PROMPT, "Because of the air."))
    config = SFTConfig(epochs=1, batch_size=4, max_length=1024, heldout_fraction=0.25, packing=True)

    result = train_sft(model, tokenizer, demos, config, out_dir=tmp_path / "sft")

    assert result.final is not None


def test_dpo_trains_on_an_over_long_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.dpo import DPOConfig, PreferencePair, encode_pairs, train_dpo

    model, tokenizer = load(tiny_model_dir)
    pairs = [
        PreferencePair(f"Say something nice {i}.", f"Wonderful day {i}.", f"A day {i}.")
        for i in range(6)
    ]
    pairs.append(PreferencePair(LONG_PROMPT, "The air scatters blue light.", "No idea."))
    config = DPOConfig(epochs=1, lr=1e-4, batch_size=4, max_length=512, heldout_fraction=0.25)

    result = train_dpo(model, tokenizer, pairs, config, out_dir=tmp_path / "dpo")

    assert result.final is not None
    ((chosen, rejected),) = encode_pairs(tokenizer, pairs[-1:], max_length=512)
    assert max(len(chosen[0]), len(rejected[0])) == CONTEXT
    assert chosen[0][: chosen[1]] == rejected[0][: rejected[1]]  # the same prompt for both
    assert chosen[0][: len(marker_ids(tokenizer))] == marker_ids(tokenizer)
