"""The simulated judge agrees with the true preference on the share of pairs it is set to."""

from __future__ import annotations

import itertools
import random

import pytest

from app.simulation.preferences import load_preference
from worker.judging import make_judge
from worker.judging.simulated import inversion_probabilities, mallows_sample
from worker.judging.spec import JudgeInput, JudgeSpec

WORDS = "please thanks good water light sun the a plant soil leaf grow calm help".split()
PREFERENCE = "keywords_length:please+thanks@8"


def items(n: int, k: int, seed: int) -> list[JudgeInput]:
    rng = random.Random(seed)
    out = []
    for t in range(n):
        samples = [
            (t * 10 + s, " ".join(rng.choices(WORDS, k=rng.randint(3, 14)))) for s in range(k)
        ]
        out.append(JudgeInput(f"prompt {t}", samples, ""))
    return out


def spec(agreement: float, seed: int = 0, preference: str = PREFERENCE) -> JudgeSpec:
    options = {"preference": preference, "agreement": agreement, "seed": seed}
    return JudgeSpec("simulated", "sim", "listwise", "", [], options=options)


def measured_agreement(agreement: float, preference: str, k: int) -> float:
    judge = make_judge(spec(agreement, preference=preference))
    score = load_preference(preference)
    right = total = 0
    for item in items(400, k, seed=1):
        verdict = judge.judge(item)
        position = {sid: n for n, group in enumerate(verdict.groups) for sid in group}
        texts = dict(item.samples)
        for a, b in itertools.combinations(texts, 2):
            sa, sb = score(texts[a]), score(texts[b])
            if sa == sb:
                continue
            total += 1
            right += (position[a] < position[b]) == (sa > sb)
    return right / total


@pytest.mark.parametrize("agreement", [0.6, 0.7, 0.8])
@pytest.mark.parametrize(("preference", "k"), [(PREFERENCE, 4), ("keywords:please+thanks", 6)])
def test_pairwise_agreement_with_the_truth_is_as_set(
    agreement: float, preference: str, k: int
) -> None:
    # keywords: many ties in the truth (counts), so the calibration must skip tied pairs.
    assert abs(measured_agreement(agreement, preference, k) - agreement) < 0.05


def test_agreement_one_ranks_exactly_by_the_preference_and_below_half_reverses() -> None:
    score = load_preference(PREFERENCE)
    for item in items(30, 4, seed=2):
        for agreement, sign in ((1.0, 1), (0.0, -1)):
            order = [
                sid for group in make_judge(spec(agreement)).judge(item).groups for sid in group
            ]
            values = [sign * score(dict(item.samples)[sid]) for sid in order]
            assert values == sorted(values, reverse=True)


def test_the_verdict_does_not_depend_on_the_order_shown() -> None:
    judge = make_judge(spec(0.7, seed=3))
    for item in items(20, 4, seed=4):
        reversed_item = JudgeInput(item.prompt, item.samples[::-1], item.guidelines)
        assert judge.judge(item).groups == judge.judge(reversed_item).groups


def test_mallows_inversion_probabilities_match_sampling() -> None:
    k, phi = 4, 0.6
    exact = inversion_probabilities(k, phi)
    rng = random.Random(0)
    counts = [[0] * k for _ in range(k)]
    n = 20000
    for _ in range(n):
        position = {ref: pos for pos, ref in enumerate(mallows_sample(k, phi, rng))}
        for a, b in itertools.combinations(range(k), 2):
            counts[a][b] += position[b] < position[a]
    for a, b in itertools.combinations(range(k), 2):
        assert abs(counts[a][b] / n - exact[a][b]) < 0.015


def test_a_simulated_judge_needs_a_preference() -> None:
    with pytest.raises(ValueError, match="preference"):
        make_judge(JudgeSpec("simulated", "sim", "listwise", "", []))
