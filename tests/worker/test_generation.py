"""Sampling several responses per prompt: counts, seeds, left padding, EOS, stop strings,
flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.generation import (
    GenerationSettings,
    cut_at_stop,
    duplicate_of,
    end_answer,
    end_token_ids,
    find_stop,
    generate_batch,
    generate_samples,
    is_empty,
    plan_batches,
    stop_strings_for,
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
    settings = GenerationSettings(max_new_tokens=30, temperature=1.0, stop_strings=[])

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
    with pytest.raises(ValueError, match="stop strings"):
        GenerationSettings(stop_strings=["\nUser:", ""])


def test_is_empty_flags_whitespace_only_text() -> None:
    assert is_empty("")
    assert is_empty(" \n\t")
    assert not is_empty(" ok ")


def test_duplicate_of_points_at_the_first_equal_sample() -> None:
    texts = ["Yes.", "No.", " yes. ", "no.", "Maybe", "YES."]

    assert duplicate_of(texts) == [None, None, 0, 1, None, 0]


# Stop strings -----------------------------------------------------------------------------

TEXT = st.text(alphabet="ab \nUser:", max_size=40)
STOPS = st.lists(st.text(alphabet="ab \nUser:", min_size=1, max_size=6), max_size=4)


@given(TEXT, STOPS)
def test_cut_text_is_a_prefix_that_holds_no_stop_string(text: str, stops: list[str]) -> None:
    cut = cut_at_stop(text, stops)

    assert text.startswith(cut)
    assert not any(stop in cut for stop in stops)
    if cut != text:  # cut exactly at a stop string
        assert any(text[len(cut) :].startswith(stop) for stop in stops)


def test_cut_is_at_the_earliest_stop_string_whichever_is_listed_first() -> None:
    text = "Tea is nice.\nAssistant: more\nUser: next"

    assert cut_at_stop(text, ["\nUser:", "\nAssistant:"]) == "Tea is nice."
    assert find_stop(text, ["\nUser:"]) == text.index("\nUser:")
    assert cut_at_stop(text, []) == text


def test_stop_strings_derive_from_the_tiny_models_dialogue_template(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    assert stop_strings_for(tokenizer, None) == ["\nUser:", "\nAssistant:"]
    assert end_token_ids(tokenizer) == [tokenizer.eos_token_id]


def test_without_a_chat_template_the_fallback_format_gives_the_same_stops(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    tokenizer.chat_template = None

    assert stop_strings_for(tokenizer, None) == ["\nUser:", "\nAssistant:"]


def test_a_project_setting_replaces_the_derived_stop_strings(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    assert stop_strings_for(tokenizer, ["###"]) == ["###"]
    assert stop_strings_for(tokenizer, []) == []


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_ends_turns_with_a_token_stops_at_that_token(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    assert end_token_ids(tokenizer) == [tokenizer.eos_token_id, im_end]
    assert stop_strings_for(tokenizer, None) == []  # the token, not a text, ends the turn


def ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_an_answer_keeps_the_tokens_that_wrote_the_stop_string_and_drops_the_rest(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    answer_ids, stop_ids = ids(tokenizer, " Boil water."), ids(tokenizer, "\nUser:")
    row = answer_ids + stop_ids + ids(tokenizer, " And now?") + [tokenizer.eos_token_id]

    answer = end_answer(tokenizer, row, end_ids={tokenizer.eos_token_id}, stops=["\nUser:"])

    assert answer.token_ids == answer_ids + stop_ids
    assert answer.text == "Boil water."
    assert answer.finished


def test_an_answer_ends_at_eos_when_no_stop_string_comes_first(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    row = ids(tokenizer, " Boil water.") + [eos, pad, pad]
    unfinished = ids(tokenizer, " Boil water and")

    ended = end_answer(tokenizer, row, end_ids={eos}, stops=["\nUser:"])
    cut_off = end_answer(tokenizer, unfinished, end_ids={eos}, stops=["\nUser:"])

    assert (ended.token_ids, ended.text, ended.finished) == (row[:-2], "Boil water.", True)
    assert (cut_off.token_ids, cut_off.finished) == (unfinished, False)


def test_samples_end_before_the_stop_strings_the_same_draws_ran_on_past(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    stops = stop_strings_for(tokenizer, None)
    prompts = PROMPTS * 4

    def run(stop_strings: list[str] | None) -> list:
        settings = GenerationSettings(max_new_tokens=48, stop_strings=stop_strings)
        return generate_batch(model, tokenizer, prompts, settings=settings, seed=3)

    stopped, running_on = run(None), run([])

    assert any(find_stop(s.text, stops) is not None for s in running_on), "no run-on to cut"
    for cut, full in zip(stopped, running_on, strict=True):
        assert find_stop(cut.text, stops) is None
        assert full.text.startswith(cut.text)  # the same tokens, up to the stop
        assert full.token_ids[: cut.n_tokens] == cut.token_ids
        if cut.finished and cut.token_ids[-1] != tokenizer.eos_token_id:  # ended by a stop
            assert find_stop(tokenizer.decode(cut.token_ids), stops) is not None
            assert find_stop(tokenizer.decode(cut.token_ids[:-1]), stops) is None
