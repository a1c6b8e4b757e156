"""The simulated person's ranking: exact at zero noise, Bradley-Terry-noisy otherwise."""

from __future__ import annotations

import math
import random

import pytest

from app.simulation.annotators import annotator_models, csrf_from_page
from app.simulation.preferences import AnnotatorModel, keyword, load_preference, rank

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
