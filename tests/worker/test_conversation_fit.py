"""A conversation longer than the context, in every stage: its oldest turns are dropped whole
(never the last user turn; the leading system message kept while it fits with that turn), the
same way in sampling, the reward model, PPO, SFT and DPO, and each stage counts the prompts it
shortened (`prompts.fit_prompt`, `prompts.PromptCuts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase

from tests.worker.test_long_prompts import load
from worker.training.generation import GenerationSettings, generate_batch
from worker.training.models import load_tokenizer
from worker.training.prompts import (
    Message,
    Prompt,
    PromptCuts,
    fit_conversation,
    fit_prompt,
    marker_ids,
    prompt_token_ids,
)
from worker.training.tiny_model import corpus_documents, synthetic_rankings, train_tokenizer

CONTEXT = 256
"""The tiny model's n_positions."""
SYSTEM = {"role": "system", "content": "Answer in one short sentence."}
QUESTION = "Why is the sky blue?"


def turn(i: int) -> list[Message]:
    """One old exchange of about 110 tokens of the tiny tokenizer."""
    return [
        {"role": "user", "content": f"Old question {i}: tell me about the stone bridge. " * 4},
        {"role": "assistant", "content": f"Old answer {i}: the river runs under it. " * 4},
    ]


CONVERSATION = [
    SYSTEM,
    *(m for i in range(6) for m in turn(i)),
    {"role": "user", "content": QUESTION},
]
"""A system message, six old exchanges and the question: several times the context."""


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    """The tiny model's tokenizer and chat template ("User: ...\\nAssistant: ..."), no model."""
    return train_tokenizer(corpus_documents())


def text_of(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return str(tokenizer.decode(ids))


def assert_oldest_turns_dropped(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> None:
    """`ids` read as CONVERSATION with its first exchanges gone: the system message, then
    whole later exchanges, then the question; no marker (nothing was cut mid-turn)."""
    text = text_of(tokenizer, ids)
    assert text.startswith(SYSTEM["content"] + "\n")
    assert text.endswith(f"User: {QUESTION}\nAssistant:")
    assert "Old question 0" not in text
    assert ids[: len(marker_ids(tokenizer))] != marker_ids(tokenizer)


# The rule ----------------------------------------------------------------------------------


def test_a_conversation_that_fits_is_left_whole(tokenizer: PreTrainedTokenizerBase) -> None:
    full = prompt_token_ids(tokenizer, CONVERSATION)

    assert fit_conversation(tokenizer, CONVERSATION, len(full)) == (CONVERSATION, 0)
    assert fit_conversation(tokenizer, CONVERSATION, None) == (CONVERSATION, 0)
    assert fit_prompt(tokenizer, CONVERSATION, len(full)).ids == full
    assert not fit_prompt(tokenizer, CONVERSATION, len(full)).cut


def test_the_oldest_turns_go_first_and_the_system_message_stays(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    kept, dropped = fit_conversation(tokenizer, CONVERSATION, 300)

    assert kept == [SYSTEM, *CONVERSATION[1 + dropped :]]
    assert dropped % 2 == 0  # whole exchanges: a user turn with its reply
    assert len(prompt_token_ids(tokenizer, kept)) <= 300
    one_more = [SYSTEM, *CONVERSATION[1 + dropped - 2 :]]
    assert len(prompt_token_ids(tokenizer, one_more)) > 300  # the fewest turns dropped
    fitted = fit_prompt(tokenizer, CONVERSATION, 300)
    assert (fitted.dropped, fitted.truncated) == (dropped, False)
    assert_oldest_turns_dropped(tokenizer, fitted.ids)


def test_the_system_message_goes_before_the_last_user_turn_is_cut(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    alone = prompt_token_ids(tokenizer, QUESTION)
    kept, dropped = fit_conversation(tokenizer, CONVERSATION, len(alone))

    assert kept == [{"role": "user", "content": QUESTION}]
    assert dropped == len(CONVERSATION) - 1
    fitted = fit_prompt(tokenizer, CONVERSATION, len(alone) - 3)  # still too long: its start
    assert fitted.truncated
    assert len(fitted.ids) == len(alone) - 3
    assert text_of(tokenizer, fitted.ids).endswith("\nAssistant:")


def test_a_plain_prompt_is_left_truncated_as_before(tokenizer: PreTrainedTokenizerBase) -> None:
    long = "Tell me about the bridge. " * 100 + QUESTION

    fitted = fit_prompt(tokenizer, long, 50)

    assert (fitted.dropped, fitted.truncated, len(fitted.ids)) == (0, True, 50)
    assert fitted.ids[: len(marker_ids(tokenizer))] == marker_ids(tokenizer)
    assert fit_conversation(tokenizer, long, 50) == ([{"role": "user", "content": long}], 0)


def test_cuts_count_distinct_prompts_by_how_they_were_cut(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    cuts = PromptCuts()
    for prompt in [CONVERSATION, CONVERSATION, QUESTION, "Tell me about it. " * 100]:
        cuts.note(prompt, fit_prompt(tokenizer, prompt, 200))

    assert cuts.figures() == {"prompts_turns_dropped": 1, "prompts_truncated": 1}


words = st.text(alphabet="abc xyz", min_size=1, max_size=40)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """An optional system message, then alternating user/assistant turns ending with a user."""
    system = [{"role": "system", "content": draw(words)}] if draw(st.booleans()) else []
    exchanges = draw(st.lists(st.tuples(words, words), max_size=6))
    body = [
        m
        for user, assistant in exchanges
        for m in ({"role": "user", "content": user}, {"role": "assistant", "content": assistant})
    ]
    return [*system, *body, {"role": "user", "content": draw(words)}]


@settings(max_examples=60, deadline=None)
@given(conversation=conversations(), budget=st.integers(min_value=1, max_value=150))
def test_what_is_kept_is_the_system_message_and_a_suffix_from_a_user_turn(
    tokenizer: PreTrainedTokenizerBase, conversation: list[Message], budget: int
) -> None:
    kept, dropped = fit_conversation(tokenizer, conversation, budget)

    assert len(kept) + dropped == len(conversation)
    assert kept[-1] == conversation[-1]  # the last user turn, always
    body = kept[1:] if kept[0]["role"] == "system" else kept
    assert body == conversation[len(conversation) - len(body) :]  # a suffix
    assert body[0]["role"] == "user"
    fits = len(prompt_token_ids(tokenizer, kept)) <= budget
    if len(prompt_token_ids(tokenizer, conversation)) <= budget:
        assert dropped == 0
    elif len(prompt_token_ids(tokenizer, conversation[-1:])) <= budget:
        assert fits  # fitting was possible, so it fits
    fitted = fit_prompt(tokenizer, conversation, budget)
    assert len(fitted.ids) <= budget
    assert fitted.dropped == dropped
    assert fitted.truncated == (not fits)


# The stages, on the tiny model ---------------------------------------------------------------


def test_generation_drops_the_oldest_turns(tiny_model_dir: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    settings = GenerationSettings(max_new_tokens=16)

    long, short = generate_batch(
        model, tokenizer, [CONVERSATION, QUESTION], settings=settings, seed=0
    )

    assert long.prompt_ids is not None
    assert len(long.prompt_ids) <= CONTEXT - 16
    assert_oldest_turns_dropped(tokenizer, long.prompt_ids)
    assert (long.prompt_dropped, long.prompt_truncated) == (
        fit_prompt(tokenizer, CONVERSATION, CONTEXT - 16).dropped,
        False,
    )
    assert long.prompt_dropped >= 2
    assert (short.prompt_dropped, short.prompt_truncated) == (0, False)


def rankings() -> list[tuple[Prompt, list[str], list[int]]]:
    """Eight synthetic rankings (best group 0), the first one's prompt CONVERSATION: the data
    of the reward model, SFT (each best response) and DPO (best against worst)."""
    found: list[tuple[Prompt, list[str], list[int]]] = list(synthetic_rankings(8, k=4, seed=1))
    found[0] = (CONVERSATION, *found[0][1:])
    return found


def best_and_worst(responses: list[str], groups: list[int]) -> tuple[str, str]:
    return responses[groups.index(min(groups))], responses[groups.index(max(groups))]


def assert_counted_once(figures: dict[str, Any]) -> None:
    """One prompt (CONVERSATION) lost its oldest turns; none needed left-truncating."""
    assert (figures["prompts_turns_dropped"], figures["prompts_truncated"]) == (1, 0)


def test_the_reward_model_drops_the_oldest_turns_and_counts_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from worker.training.reward_model import (
        RankingExample,
        RewardModelConfig,
        encode_responses,
        train_reward_model,
    )

    examples = [RankingExample(p, r, g) for p, r, g in rankings()]
    config = RewardModelConfig(epochs=1, batch_size=4, heldout_fraction=0.25, max_length=512)

    result = train_reward_model(str(tiny_model_dir), examples, config, out_dir=tmp_path / "rm")

    assert_counted_once(vars(result))
    tokenizer = load_tokenizer(str(tmp_path / "rm"))
    cuts = PromptCuts()
    rows = encode_responses(tokenizer, CONVERSATION, ["Yes.", "No."], max_length=512, cuts=cuts)
    answer = tokenizer(" Yes.", add_special_tokens=False)["input_ids"]
    assert len(rows[0]) <= CONTEXT
    assert_oldest_turns_dropped(tokenizer, rows[0][: len(rows[0]) - len(answer)])
    assert_counted_once(cuts.figures())


def test_ppo_drops_the_oldest_turns_of_rollout_prompts(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from worker.training.ppo import PPOConfig, train_ppo

    tokenizer = load_tokenizer(str(tiny_model_dir))
    config = PPOConfig(
        steps=1, batch_size=4, mini_batch_size=4, max_new_tokens=12, lr=5e-5, seed=0, device="cpu"
    )
    scored: list[Prompt] = []

    def score_fn(prompts: list[Prompt], responses: list[str]) -> list[float]:
        scored.extend(prompts)  # the reward model gets it whole, and fits it by the same rule
        return [0.0] * len(responses)

    result = train_ppo(
        str(tiny_model_dir), tokenizer, [CONVERSATION, QUESTION], score_fn, config,
        out_dir=tmp_path / "ppo",
    )  # fmt: skip

    assert CONVERSATION in scored
    assert_counted_once(result.final)


def test_sft_drops_the_oldest_turns_and_counts_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.sft import Demonstration, SFTConfig, encode_examples, train_sft

    model, tokenizer = load(tiny_model_dir)
    demos = [Demonstration(p, best_and_worst(r, g)[0]) for p, r, g in rankings()]
    config = SFTConfig(epochs=1, batch_size=4, max_length=512, heldout_fraction=0.25)

    result = train_sft(model, tokenizer, demos, config, out_dir=tmp_path / "sft")

    assert_counted_once(result.final)
    ((ids, n_prompt),) = encode_examples(tokenizer, CONVERSATION, ["Air."], max_length=512)
    assert len(ids) <= CONTEXT
    assert_oldest_turns_dropped(tokenizer, ids[:n_prompt])
    answer = tokenizer(" Air.", add_special_tokens=False)["input_ids"]
    assert ids[n_prompt:] == [*answer, tokenizer.eos_token_id]  # the answer is whole


def test_dpo_drops_the_oldest_turns_and_counts_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    from worker.training.dpo import DPOConfig, PreferencePair, encode_pairs, train_dpo

    model, tokenizer = load(tiny_model_dir)
    pairs = [PreferencePair(p, *best_and_worst(r, g)) for p, r, g in rankings()]
    config = DPOConfig(epochs=1, lr=1e-4, batch_size=4, heldout_fraction=0.25)

    result = train_dpo(model, tokenizer, pairs, config, out_dir=tmp_path / "dpo")

    assert_counted_once(result.final)
    ((chosen, rejected),) = encode_pairs(tokenizer, pairs[:1], max_length=512)
    assert chosen[0][: chosen[1]] == rejected[0][: rejected[1]]  # the same turns for both
    assert_oldest_turns_dropped(tokenizer, chosen[0][: chosen[1]])
