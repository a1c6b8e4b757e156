"""The simulated person's ranking: exact at zero noise, Bradley-Terry-noisy otherwise."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.simulation.annotators import annotator_models, csrf_from_page
from app.simulation.preferences import (
    FAMILIES,
    LENGTH_RANGE,
    AnnotatorModel,
    answer_openers,
    answer_vocabulary,
    draw_preference,
    keyword,
    load_preference,
    rank,
)
from rankloop.simulation import corpus_answers

TEXTS = [
    "Sure.",
    "Please, please ask again, please.",
    "Please wait.",
    "Of course, please and please do.",
]
IDS = [11, 12, 13, 14]


@pytest.mark.parametrize("seed", range(5))
def test_noise_free_ranking_follows_the_preference(seed: int) -> None:
    groups = rank(
        TEXTS, IDS, keyword("please"), AnnotatorModel(temperature=0.0), random.Random(seed)
    )
    assert groups == [[12], [14], [13], [11]]


def test_noisy_pairs_follow_bradley_terry_probabilities() -> None:
    # Scores 1 and 0 at temperature 1: the better answer wins with probability σ(1) ≈ 0.731.
    rng = random.Random(0)
    person = AnnotatorModel(temperature=1.0)
    trials = 4000
    wins = sum(
        rank(["please", "no"], [1, 2], keyword("please"), person, rng)[0] == [1]
        for _ in range(trials)
    )
    assert abs(wins / trials - 1 / (1 + math.exp(-1))) < 0.03


def test_a_length_bias_turns_a_tie_towards_the_longer_answer() -> None:
    texts = ["short one", "a much longer answer with many more words in it"]
    person = AnnotatorModel(temperature=0.0, bias=1.0)
    assert rank(texts, [1, 2], lambda _: 0.0, person, random.Random(0)) == [[2], [1]]


def test_annotators_share_noise_and_draw_their_own_bias() -> None:
    people = annotator_models(4, noise=0.3, bias=0.5, seed=1)
    assert {p.temperature for p in people} == {0.3}
    assert len({p.bias for p in people}) == 4
    assert annotator_models(4, noise=0.3, bias=0.5, seed=1) == people


def test_load_preference_by_name_argument_and_module_path() -> None:
    assert load_preference("keyword:thanks")("Thanks, thanks!") == 2.0
    assert load_preference("length:3")("one two three") == 0.0
    assert load_preference("app.simulation.preferences:sentiment")("a good day") == 1.0
    with pytest.raises(ValueError, match="Unknown preference"):
        load_preference("politeness")
    with pytest.raises(ValueError, match="Cannot load preference"):
        load_preference("no_such_module:score")


def test_csrf_token_is_read_from_the_body_htmx_headers() -> None:
    page = '<html><body class="x" hx-headers=\'{"X-CSRF-Token": "abc123"}\'><p>hi</p></body>'
    assert csrf_from_page(page) == "abc123"


# Families with drawn parameters (bench/loop.py --suite)

VOCABULARY = ["apple", "river", "bright", "calm", "cold", "tired", "green", "stone", "slow"]
OPENERS = ["put", "give", "keep"]
texts = st.lists(st.sampled_from([*VOCABULARY, *OPENERS, "a", "the", "is", "Calm,"]), max_size=60)


@settings(max_examples=60, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 2**31), words=texts)
def test_a_drawn_preference_spec_loads_back_to_the_same_scores(
    family: str, seed: int, words: list[str]
) -> None:
    spec, preference = draw_preference(family, random.Random(seed), VOCABULARY, openers=OPENERS)
    text = " ".join(words)

    assert spec.startswith(f"{family}:")
    assert load_preference(spec)(text) == preference(text)
    assert draw_preference(family, random.Random(seed), VOCABULARY, openers=OPENERS)[0] == spec


@pytest.mark.parametrize("seed", range(20))
def test_drawn_parameters_come_from_the_vocabulary_and_the_length_range(seed: int) -> None:
    rng = random.Random(seed)
    words = set(draw_preference("keywords", rng, VOCABULARY)[0].split(":")[1].split("+"))
    length = int(draw_preference("length", rng, VOCABULARY)[0].split(":")[1])
    good, bad = draw_preference("sentiment_words", rng, VOCABULARY)[0].split(":")[1].split("/")
    first = set(draw_preference("opening", rng, VOCABULARY, openers=OPENERS)[0][8:].split("+"))

    assert len(words) == 3
    assert words <= set(VOCABULARY)
    assert LENGTH_RANGE[0] <= length <= LENGTH_RANGE[1]
    assert set(good.split("+")) <= {"bright", "calm"}
    assert set(bad.split("+")) <= {"cold", "tired", "slow"}
    assert first <= set(OPENERS)


def test_keywords_count_any_of_the_words() -> None:
    score = load_preference("keywords:apple+river")
    assert score("a stone") == 0.0
    assert score("an Apple by the river") == 2.0
    assert score("apple, apple, river") == 3.0


def test_keywords_length_adds_keywords_and_closeness_to_the_target() -> None:
    score = load_preference("keywords_length:apple@4")
    assert score("one two three four") == 0.0
    assert score("one two three apple") == 1.0
    assert score("one two") == -0.5
    assert score("apple two") > score("one two") > score("one")


def test_avoid_costs_a_point_per_word() -> None:
    score = load_preference("avoid:cold+slow")
    assert score("a warm day") == 0.0
    assert score("a cold, slow day") == -2.0


def test_sentiment_words_are_positive_minus_negative() -> None:
    score = load_preference("sentiment_words:calm+bright/cold")
    assert score("calm and bright") == 2.0
    assert score("calm but cold") == 0.0
    assert score("cold, cold") == -2.0


def test_opening_rewards_the_first_word_only() -> None:
    score = load_preference("opening:put+keep")
    assert score(" Put the pot on the stove.") == 1.0
    assert score("First put the pot on the stove.") == 0.0
    assert score("") == 0.0


@pytest.mark.parametrize(
    "spec",
    ["keywords:", "keywords:a b", "keywords_length:apple", "sentiment_words:calm", "length:x"],
)
def test_malformed_family_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="(?i)preference"):
        load_preference(spec)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown family"):
        draw_preference("politeness", random.Random(0), VOCABULARY)


def test_vocabulary_keeps_words_neither_rare_nor_everywhere() -> None:
    answers = ["the apple is ripe"] * 10 + ["the river runs"] * 189 + ["the cat"]
    assert answer_vocabulary(answers) == ["apple", "ripe"]  # 'is' is short, 'cat' rare


def test_openers_are_first_words_neither_rare_nor_everywhere() -> None:
    answers = ["Apple pie"] * 10 + ["River, apple"] * 189 + ["Cats"]
    assert answer_openers(answers) == ["apple"]


def test_length_range_spans_the_tiny_models_answers() -> None:
    lengths = [len(answer.split()) for answer in corpus_answers()]
    deciles = statistics.quantiles(lengths, n=10)
    assert LENGTH_RANGE == (int(deciles[0]), int(deciles[-1]))
