"""DPO on the tiny model with pairs whose rule is known: the chosen response says "wonderful".

The loss itself is checked against its formula in test_losses.py; here the trainer must
learn the rule on prompts it never saw, leave the reference alone, and save a loadable adapter.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.dpo import (
    DPOConfig,
    DPOResult,
    PreferencePair,
    evaluate_pairs,
    heldout_logratio,
    pair_accuracy,
    train_dpo,
)
from worker.training.loop import add_policy_adapter, split_by_prompt
from worker.training.models import load_causal_lm, load_tokenizer
from worker.training.outcomes import TrainingCancelled
from worker.training.sft import Demonstration, build_sft_batch
from worker.training.tiny_model import MARKER

FILLER = (
    "the garden river morning bread friend quiet light small green walk book city tea warm "
    "rain table window music road school simple story water stone field slow bright"
).split()
TOPICS = ["a walk in the park", "a rainy day", "breakfast", "the sea", "a new book", "music"]


def marker_pairs(n: int, *, seed: int) -> list[PreferencePair]:
    """Pairs differing in one word: chosen has MARKER where rejected has a filler word."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        words = rng.choices(FILLER, k=8)
        rejected = " ".join(words) + "."
        words[rng.randrange(len(words))] = MARKER
        prompt = f"Say something about {rng.choice(TOPICS)} (note {seed}-{i})."
        pairs.append(PreferencePair(prompt, " ".join(words) + ".", rejected))
    return pairs


CONFIG = DPOConfig(beta=0.1, epochs=2, lr=1e-3, batch_size=4, max_length=64, heldout_fraction=0.25)


def load(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_causal_lm(str(path), device="cpu"), load_tokenizer(str(path))


@pytest.fixture(scope="module")
def progress_calls() -> list[tuple[int, int, dict[str, float]]]:
    return []


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    progress_calls: list[tuple[int, int, dict[str, float]]],
) -> DPOResult:
    model, tokenizer = load(tiny_model_dir)
    return train_dpo(
        model,
        tokenizer,
        marker_pairs(32, seed=0),
        CONFIG,
        out_dir=tmp_path_factory.mktemp("dpo") / "adapter",
        progress=lambda step, total, metrics: progress_calls.append((step, total, metrics)),
    )


@pytest.fixture
def untrained(tiny_model_dir: Path) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """A fresh "policy" adapter: LoRA's B starts at 0, so policy and reference coincide."""
    model, tokenizer = load(tiny_model_dir)
    lora = DPOConfig(lora_r=8, lora_alpha=16, target_modules="all-linear")
    policy = add_policy_adapter(model, lora, dropout=0.0, init_adapter_dir=None)
    return policy, tokenizer


# Training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_raises_the_logratio_on_unseen_prompts(
    trained: DPOResult, untrained: tuple[PeftModel, PreTrainedTokenizerBase]
) -> None:
    untrained_policy, tokenizer = untrained
    unseen = marker_pairs(20, seed=1)
    before = heldout_logratio(untrained_policy, tokenizer, unseen)
    after = heldout_logratio(trained.model, tokenizer, unseen)
    assert before == pytest.approx(0.0, abs=1e-4)
    assert after > before + 0.5
    assert pair_accuracy(untrained_policy, tokenizer, unseen) == 0.0  # ties count as wrong
    assert pair_accuracy(trained.model, tokenizer, unseen) >= 0.6


@pytest.mark.slow
def test_trainer_reports_heldout_figures_before_and_after(trained: DPOResult) -> None:
    final = trained.final
    assert final["n_heldout"] == 8
    assert final["heldout_logratio_before"] == pytest.approx(0.0, abs=1e-4)
    assert final["heldout_logratio"] > final["heldout_logratio_before"] + 0.5
    assert final["heldout_accuracy"] >= 0.6
    assert [e["epoch"] for e in trained.epochs] == [1, 2]
    assert (trained.adapter_dir / "metrics.json").exists()


@pytest.mark.slow
def test_first_step_sees_policy_equal_to_reference(trained: DPOResult) -> None:
    # The precomputed reference log-probs must match the policy's before any update.
    first = trained.steps[0]
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert first["loss"] == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-4)
    assert trained.steps[-1]["reward_margin"] > 0.05


@pytest.mark.slow
def test_progress_follows_every_step_with_the_dpo_metrics(
    trained: DPOResult, progress_calls: list[tuple[int, int, dict[str, float]]]
) -> None:
    assert [step for step, _, _ in progress_calls] == list(range(1, 13))  # 24 pairs / 4, 2 epochs
    assert {total for _, total, _ in progress_calls} == {12}
    expected = {"loss", "chosen_rewards", "rejected_rewards", "reward_margin", "reward_accuracy"}
    assert expected <= set(progress_calls[-1][2])


@pytest.mark.slow
def test_reference_is_unchanged_by_training(trained: DPOResult, tiny_model_dir: Path) -> None:
    base, tokenizer = load(tiny_model_dir)
    demos = [Demonstration(p.prompt, p.chosen) for p in marker_pairs(4, seed=2)]
    input_ids, attention_mask, _ = build_sft_batch(tokenizer, demos, 64)
    with torch.no_grad():
        base_logits = base(input_ids=input_ids, attention_mask=attention_mask).logits
        with trained.model.disable_adapter():
            reference = trained.model(input_ids=input_ids, attention_mask=attention_mask).logits
        policy = trained.model(input_ids=input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(reference, base_logits, atol=1e-6, rtol=1e-6)
    assert (policy - base_logits).abs().max() > 1e-2


@pytest.mark.slow
def test_saved_adapter_reloads_with_the_same_heldout_figures(
    trained: DPOResult, tiny_model_dir: Path
) -> None:
    base, tokenizer = load(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, trained.adapter_dir)  # as the promotion gate does
    unseen = marker_pairs(8, seed=3)
    expected = evaluate_pairs(trained.model, tokenizer, unseen)
    assert evaluate_pairs(reloaded, tokenizer, unseen) == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_ipo_loss_trains_the_policy(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    config = replace(CONFIG, loss_type="ipo", epochs=1)
    result = train_dpo(model, tokenizer, marker_pairs(16, seed=0), config, out_dir=tmp_path)
    # IPO at h = 0 is (1 / (2β))² = 25; it falls as the log-ratio moves towards 1 / (2β).
    assert result.steps[0]["loss"] == pytest.approx(25.0, abs=1e-2)
    assert result.steps[-1]["loss"] < result.steps[0]["loss"]
    assert result.final["loss_type"] == "ipo"
    assert result.final["heldout_logratio"] > result.final["heldout_logratio_before"]


@pytest.mark.slow
def test_should_stop_cancels_and_saves_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(TrainingCancelled):
        train_dpo(
            model,
            tokenizer,
            marker_pairs(16, seed=0),
            CONFIG,
            out_dir=tmp_path / "out",
            should_stop=should_stop,
        )
    assert len(polls) == 2
    assert not (tmp_path / "out").exists()


# Inputs ----------------------------------------------------------------------------------------


def test_pair_with_identical_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="identical"):
        PreferencePair("Hi.", "Hello.", "Hello.")


@pytest.mark.parametrize(
    "overrides",
    [{"beta": 0.0}, {"loss_type": "hinge"}, {"lr": -1.0}, {"heldout_fraction": 1.0}],
)
def test_config_rejects_invalid_values(overrides: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        DPOConfig(**overrides)


def test_the_epoch_with_the_lowest_heldout_loss_is_the_one_kept(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A large learning rate on few pairs: later epochs overfit the training prompts.
    model, tokenizer = load(tiny_model_dir)
    config = replace(CONFIG, epochs=4, lr=2e-2)

    result = train_dpo(
        model, tokenizer, marker_pairs(24, seed=3), config, out_dir=tmp_path / "adapter"
    )

    losses = [e["heldout_loss"] for e in result.epochs]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result.final["best_epoch"] == best + 1
    assert result.final["heldout_accuracy"] == result.epochs[best]["heldout_accuracy"]
    # The saved adapter is that epoch's: its held-out accuracy measured again agrees.
    _, heldout = split_by_prompt(
        marker_pairs(24, seed=3), heldout_fraction=config.heldout_fraction, seed=config.seed
    )
    assert evaluate_pairs(result.model, tokenizer, heldout, max_length=64)["accuracy"] == (
        pytest.approx(result.epochs[best]["heldout_accuracy"])
    )


# Reliability weights ---------------------------------------------------------------------------


def test_pair_with_a_negative_or_non_finite_weight_is_refused() -> None:
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight"):
            PreferencePair("Hi.", "Hello.", "Bye.", weight)


def test_training_only_weight_0_pairs_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    pairs = [replace(p, weight=0.0) for p in marker_pairs(8, seed=5)]

    with pytest.raises(ValueError, match="weight above 0"):
        train_dpo(model, tokenizer, pairs, CONFIG, out_dir=tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


@pytest.mark.slow
def test_weight_0_reversed_pairs_train_the_same_adapter_as_without_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every pair again, reversed, from an annotator whose reliability weight is 0.
    pairs = marker_pairs(16, seed=4)
    reversed_ = [PreferencePair(p.prompt, p.rejected, p.chosen, 0.0) for p in pairs]
    config = replace(CONFIG, epochs=1)
    model, tokenizer = load(tiny_model_dir)
    alone = train_dpo(model, tokenizer, pairs, config, out_dir=tmp_path / "alone")
    model, tokenizer = load(tiny_model_dir)

    with_zero = train_dpo(model, tokenizer, pairs + reversed_, config, out_dir=tmp_path / "zero")

    unseen = marker_pairs(8, seed=6)
    torch.testing.assert_close(
        torch.tensor(evaluate_pairs(with_zero.model, tokenizer, unseen)["logratio"]),
        torch.tensor(evaluate_pairs(alone.model, tokenizer, unseen)["logratio"]),
        atol=1e-4,
        rtol=1e-4,
    )
    assert with_zero.final["steps"] == alone.final["steps"]
    assert with_zero.final["n_train_weight_zero"] == with_zero.final["n_train"] // 2
    # Held out, accuracy is measured against every label; the weighted one leaves them out.
    assert with_zero.final["heldout_accuracy"] == pytest.approx(0.5)
    assert with_zero.final["heldout_weighted_accuracy"] == pytest.approx(
        alone.final["heldout_accuracy"]
    )
