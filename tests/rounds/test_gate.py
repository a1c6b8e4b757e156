"""The promotion gate's decision on plain numbers, and its score figures with plain scorers."""

from __future__ import annotations

import re
from typing import Any

from app.rounds.gate import decide
from worker.jobs.rounds import pooled_signal, score_candidate, signal_shortfall

CONFIG = {"max_kl": 25.0, "min_score_gain": 0.0}


def _gate(**overrides: Any) -> dict[str, Any]:
    return {
        "kl": 3.0,
        "max_kl": 25.0,
        "identical_samples": 0.0,
        "score_gain": 0.30,
        "score_gain_low": 0.12,
        "score_gain_high": 0.48,
        "confidence": 0.9,
        **overrides,
    }


def test_a_gain_whose_interval_clears_the_bound_passes() -> None:
    assert decide(_gate(), CONFIG) == (True, [])


def test_a_positive_point_gain_with_an_interval_reaching_zero_is_not_enough() -> None:
    passed, reasons = decide(_gate(score_gain=0.2, score_gain_low=-0.01), CONFIG)

    assert not passed
    assert "low end is not above 0.0" in reasons[0]


def test_an_interval_of_zero_width_at_zero_measured_nothing_and_fails() -> None:
    gate = _gate(score_gain=0.0, score_gain_low=0.0, score_gain_high=0.0, identical_samples=1.0)

    passed, reasons = decide(gate, CONFIG)

    assert not passed
    assert any("identical" in r for r in reasons)
    assert any("not above" in r for r in reasons)


def test_kl_over_its_bound_fails_whatever_the_gain() -> None:
    passed, reasons = decide(_gate(kl=30.0), CONFIG)

    assert not passed
    assert "KL" in reasons[0]


def _words(prompts: list[Any], texts: list[str]) -> list[float]:
    """A scorer that rewards length, as a gamed reward model does."""
    return [float(len(t.split())) for t in texts]


def _says_good(prompts: list[Any], texts: list[str]) -> list[float]:
    """A scorer that rewards what people asked for ('good') and ignores length."""
    return [float(t.split().count("good")) for t in texts]


def test_gate_rejects_what_its_judge_rates_worse_though_the_trained_model_rates_it_better() -> None:
    prompts = [f"p{i}" for i in range(30) for _ in range(2)]  # 30 prompts, 2 samples each
    old = ["good answer"] * len(prompts)
    # The candidate learned to talk longer and dropped the word people like.
    new = ["a much longer answer that says a lot of words"] * len(prompts)

    figures = score_candidate(
        prompts,
        new,
        old,
        judge=_says_good,
        trained_on=_words,
        samples_per_prompt=2,
        confidence=0.9,
        seed=0,
    )
    passed, reasons = decide(_gate(**figures), CONFIG)

    assert figures["training_rm_gain"] > 0  # the model PPO optimised says "better"
    assert figures["score_gain"] < 0  # the held-out judge says "worse"
    assert figures["score_gain_high"] < 0
    assert not passed
    assert "not above" in reasons[0]


def test_score_length_correlation_shows_a_judge_that_rewards_length() -> None:
    prompts = [f"p{i}" for i in range(20)]
    new = [" ".join(["w"] * (i + 1)) for i in range(20)]

    figures = score_candidate(
        prompts, new, new, judge=_words, trained_on=None, samples_per_prompt=1,
        confidence=0.9, seed=0,
    )  # fmt: skip

    assert figures["length_correlation"] == 1.0
    assert "training_rm_gain" not in figures
    assert figures["score_gain_low"] == figures["score_gain_high"] == 0.0


def test_signal_shortfall_passes_a_reward_model_whose_interval_clears_chance() -> None:
    signal = {"accuracy": 0.7, "low": 0.6, "high": 0.8, "heldout_rankings": 40, "rankings": 100}

    assert signal_shortfall(signal, 0.5) is None
    assert signal_shortfall({**signal, "low": 0.45}, 0.5) is not None
    assert signal_shortfall({**signal, "low": 0.45}, 0.0) is None  # 0 turns the check off


def test_signal_shortfall_estimates_the_rankings_still_needed() -> None:
    # Accuracy 0.56 ± 0.08 from 100 rankings: the interval shrinks as 1/sqrt(n), so about
    # 100 * (0.08 / 0.06)^2 = 178 rankings would clear 0.5, i.e. about 78 more.
    signal = {"accuracy": 0.56, "low": 0.48, "high": 0.64, "confidence": 0.9,
              "heldout_rankings": 40, "rankings": 100}  # fmt: skip

    reason = signal_shortfall(signal, 0.5)

    assert reason is not None
    assert "0.560" in reason
    assert "[0.480, 0.640] at 90% on 40 held-out rankings" in reason
    more = re.search(r"about (\d+) more", reason)
    assert more is not None
    assert 70 <= int(more.group(1)) <= 80


def test_signal_shortfall_at_chance_asks_for_more_and_for_agreement() -> None:
    signal = {"accuracy": 0.48, "low": 0.40, "high": 0.56, "heldout_rankings": 20, "rankings": 50}

    reason = signal_shortfall(signal, 0.5)

    assert reason is not None
    assert "at least 50 more" in reason
    assert "agree" in reason


def test_pooled_signal_counts_the_held_out_rankings_of_both_reward_models() -> None:
    first = {"heldout_ranking_counts": [[5.0, 6], [4.0, 6]], "n_train": 30, "n_heldout": 2}
    second = {"heldout_ranking_counts": [[6.0, 6], [3.0, 6], [5.0, 6]], "n_train": 29,
              "n_heldout": 3}  # fmt: skip

    signal = pooled_signal(first, second)

    assert signal["heldout_rankings"] == 5
    assert signal["accuracy"] == 23 / 30
    assert signal["rankings"] == 32
    assert signal["low"] <= signal["accuracy"] <= signal["high"]


def test_a_dpo_accuracy_bound_of_zero_only_shows_the_figure() -> None:
    gate = _gate(heldout_accuracy=0.45, min_heldout_accuracy=0.0)

    assert decide(gate, CONFIG) == (True, [])
    assert decide({**gate, "min_heldout_accuracy": 0.5}, CONFIG)[0] is False
