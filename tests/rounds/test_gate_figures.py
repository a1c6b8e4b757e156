"""The gate's figures from measurements, on plain numbers: what the evaluating stage computes
between measuring (sampling, KL, scores) and deciding (`decide`)."""

from __future__ import annotations

import pytest

from app.rounds import registry
from app.rounds.gate import decide, repeat_prompts, sample_figures
from app.rounds.types.dpo import DPOConfig
from app.rounds.types.reward_ppo import PPOSettings, RewardPPOConfig
from app.rounds.types.sft import SFTConfig


def test_each_prompt_is_repeated_once_per_sample_in_a_row() -> None:
    assert repeat_prompts(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]


def test_sample_figures_give_kl_per_token_and_the_share_of_identical_samples() -> None:
    figures = sample_figures(
        kl=6.0,
        new_texts=["x", "y", "z", "w"],
        old_texts=["x", "q", "z", "r"],
        new_lengths=[2, 4, 2, 4],
        max_kl=25.0,
        samples_per_prompt=2,
    )

    assert figures == {
        "kl": 6.0,
        "kl_per_token": 2.0,
        "max_kl": 25.0,
        "gate_samples": 2,
        "identical_samples": 0.5,
    }


def test_no_samples_count_as_identical_and_leave_kl_per_token_unmeasured() -> None:
    figures = sample_figures(
        kl=0.0, new_texts=[], old_texts=[], new_lengths=[], max_kl=25.0, samples_per_prompt=1
    )

    assert figures["identical_samples"] == 1.0
    assert figures["kl_per_token"] is None
    passed, reasons = decide(figures, {"max_kl": 25.0})
    assert not passed
    assert "identical" in reasons[0]


def test_sample_figures_refuse_sample_lists_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="shorter"):
        sample_figures(
            kl=1.0,
            new_texts=["a", "b"],
            old_texts=["a"],
            new_lengths=[1, 1],
            max_kl=25.0,
            samples_per_prompt=1,
        )


def test_the_dpo_type_adds_its_held_out_accuracy_and_bound() -> None:
    spec = registry.get("dpo")
    config = DPOConfig(min_heldout_accuracy=0.6)
    assert spec.gate_figures is not None

    figures = spec.gate_figures(config, {"dpo": {"heldout_accuracy": 0.55}})

    assert figures == {"heldout_accuracy": 0.55, "min_heldout_accuracy": 0.6}
    passed, reasons = decide({"kl": 1.0, **figures}, config.model_dump())
    assert not passed
    assert "0.550 is below 0.6" in reasons[0]


def test_only_ppo_rounds_sample_the_gate_with_their_own_rollout_settings() -> None:
    ppo = RewardPPOConfig(ppo=PPOSettings(temperature=0.7, max_new_tokens=48))

    assert ppo.sampling() == (0.7, 48)
    assert RewardPPOConfig().sampling() == (None, None)  # blank: the project's
    assert SFTConfig().sampling() == (None, None)
    assert DPOConfig().sampling() == (None, None)
