"""SFT on the tiny model: the loss sits on response tokens only, and training learns a pattern."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.loop import split_by_prompt
from worker.training.losses import IGNORE_INDEX, sft_loss
from worker.training.models import encode_prompt, format_prompt, load_causal_lm, load_tokenizer
from worker.training.outcomes import TrainingCancelled, TrainingDiverged
from worker.training.sft import (
    Demonstration,
    SFTConfig,
    SFTResult,
    build_packed_batch,
    build_sft_batch,
    train_sft,
)

TOPICS = [
    "the sea",
    "a rainy day",
    "breakfast",
    "an old friend",
    "a new book",
    "a train ride",
    "the first snow",
    "a small garden",
    "a busy market",
    "music",
]
PHRASE = "Here is my short answer:"


def demonstrations(n: int, *, start: int = 0) -> list[Demonstration]:
    """Demonstrations with one consistent pattern: every response opens with PHRASE."""
    return [
        Demonstration(
            f"Write about {TOPICS[i % len(TOPICS)]} (note {i}).",
            f"{PHRASE} {TOPICS[i % len(TOPICS)]} is lovely.",
        )
        for i in range(start, start + n)
    ]


CONFIG = SFTConfig(epochs=3, lr=3e-3, batch_size=4, max_length=64, heldout_fraction=0.2)


def load(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_causal_lm(str(path), device="cpu"), load_tokenizer(str(path))


@torch.no_grad()
def mean_loss(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, demos: list) -> float:
    input_ids, attention_mask, labels = build_sft_batch(tokenizer, demos, 64)
    return float(sft_loss(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels))


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SFTResult:
    model, tokenizer = load(tiny_model_dir)
    out_dir = tmp_path_factory.mktemp("sft") / "adapter"
    return train_sft(model, tokenizer, demonstrations(30), CONFIG, out_dir=out_dir)


# Batches and masking -------------------------------------------------------------------------


def test_labels_are_ignore_index_exactly_on_prompt_and_padding(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    demos = [
        Demonstration("Hi.", "Hello there, friend."),
        Demonstration([{"role": "user", "content": "Tell me a long story."}], "No."),
    ]
    input_ids, attention_mask, labels = build_sft_batch(tokenizer, demos, 64)

    for row, demo in enumerate(demos):
        n_prompt = len(encode_prompt(tokenizer, format_prompt(tokenizer, demo.prompt)))
        n_real = int(attention_mask[row].sum())
        positions = torch.arange(input_ids.shape[1])
        ignored = (positions < n_prompt) | (attention_mask[row] == 0)
        assert torch.equal(labels[row] == IGNORE_INDEX, ignored)
        assert torch.equal(labels[row][~ignored], input_ids[row][~ignored])
        assert labels[row, n_real - 1] == tokenizer.eos_token_id  # the response ends with EOS
        response = tokenizer.decode(input_ids[row, n_prompt : n_real - 1])
        assert response.strip() == demo.response
    assert (input_ids[attention_mask == 0] == tokenizer.pad_token_id).all()


def test_loss_ignores_the_logits_at_prompt_and_padding_positions(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    _, _, labels = build_sft_batch(tokenizer, demonstrations(3), 64)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((*labels.shape, len(tokenizer)), generator=generator)  # (B, T, V)
    loss = sft_loss(logits, labels)

    # logits[:, t] predicts token t + 1: positions whose next label is ignored must not count.
    no_target = torch.zeros(labels.shape, dtype=torch.bool)
    no_target[:, :-1] = labels[:, 1:] == IGNORE_INDEX
    no_target[:, -1] = True
    noise = 10 * torch.randn(logits.shape, generator=generator)
    changed = torch.where(no_target.unsqueeze(-1), logits + noise, logits)
    assert sft_loss(changed, labels) == pytest.approx(float(loss), abs=1e-6)

    # The last prompt position predicts the first response token: that one does count.
    first_response = (labels[0] != IGNORE_INDEX).nonzero()[0, 0]
    changed = logits.clone()
    changed[0, first_response - 1] += noise[0, first_response - 1]
    assert abs(float(sft_loss(changed, labels)) - float(loss)) > 1e-3


def test_packed_rows_give_the_same_loss_as_separate_rows(tiny_model_dir: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    demos = demonstrations(6)
    with torch.no_grad():
        input_ids, attention_mask, labels = build_sft_batch(tokenizer, demos, 64)
        separate = sft_loss(
            model(input_ids=input_ids, attention_mask=attention_mask).logits, labels
        )
        packed_ids, position_ids, packed_labels = build_packed_batch(tokenizer, demos, 128)
        packed = sft_loss(
            model(input_ids=packed_ids, position_ids=position_ids, use_cache=False).logits,
            packed_labels,
        )
    assert packed_ids.shape[0] < len(demos)  # several demonstrations share a row
    assert int((packed_labels != IGNORE_INDEX).sum()) == int((labels != IGNORE_INDEX).sum())
    # Equal only if no token attends across demonstrations and positions restart per example.
    assert float(packed) == pytest.approx(float(separate), abs=1e-5)


def test_heldout_split_never_shares_a_prompt() -> None:
    demos = demonstrations(10) + demonstrations(10)  # every prompt twice
    train, heldout = split_by_prompt(demos, heldout_fraction=0.3, seed=1)
    assert len(train) + len(heldout) == 20
    assert heldout
    assert not {d.prompt for d in train} & {d.prompt for d in heldout}


@pytest.mark.parametrize(
    "overrides",
    [{"lr": 0.0}, {"epochs": 0}, {"heldout_fraction": 1.0}, {"max_length": 1}],
)
def test_config_rejects_invalid_values(overrides: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        SFTConfig(**overrides)


# Training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_lowers_the_heldout_loss(trained: SFTResult) -> None:
    final = trained.final
    assert final["n_heldout"] == 6
    assert final["heldout_loss"] < 0.8 * final["heldout_loss_before"]
    assert [e["epoch"] for e in trained.epochs] == [1, 2, 3]
    assert trained.epochs[-1]["heldout_perplexity"] == pytest.approx(
        torch.tensor(final["heldout_loss"]).exp().item()
    )
    saved = json.loads((trained.adapter_dir / "metrics.json").read_text())
    assert saved["final"] == pytest.approx(final)


@pytest.mark.slow
def test_trained_model_fits_demonstrations_it_never_saw(
    trained: SFTResult, tiny_model_dir: Path
) -> None:
    base, tokenizer = load(tiny_model_dir)
    unseen = demonstrations(8, start=100)
    assert mean_loss(trained.model, tokenizer, unseen) < 0.8 * mean_loss(base, tokenizer, unseen)


@pytest.mark.slow
def test_saved_adapter_reloads_with_the_trained_logits(
    trained: SFTResult, tiny_model_dir: Path
) -> None:
    base, tokenizer = load(tiny_model_dir)
    input_ids, attention_mask, _ = build_sft_batch(tokenizer, demonstrations(4, start=50), 64)
    with torch.no_grad():
        base_logits = base(input_ids=input_ids, attention_mask=attention_mask).logits
        reloaded = PeftModel.from_pretrained(base, trained.adapter_dir)
        reloaded_logits = reloaded(input_ids=input_ids, attention_mask=attention_mask).logits
        trained_logits = trained.model(input_ids=input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(reloaded_logits, trained_logits, atol=1e-5, rtol=1e-5)
    assert (trained_logits - base_logits).abs().max() > 1e-2  # the adapter is not a no-op


@pytest.mark.slow
def test_continuing_from_an_adapter_starts_from_its_weights(
    trained: SFTResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model, tokenizer = load(tiny_model_dir)
    config = replace(CONFIG, epochs=1)
    result = train_sft(
        model,
        tokenizer,
        demonstrations(30),
        config,
        out_dir=tmp_path,
        init_adapter_dir=trained.adapter_dir,
    )
    assert result.final["heldout_loss_before"] == pytest.approx(
        trained.final["heldout_loss"], abs=1e-4
    )
    assert result.final["heldout_loss"] < result.final["heldout_loss_before"]


@pytest.mark.slow
def test_packed_training_lowers_the_heldout_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    config = replace(CONFIG, packing=True, batch_size=2, max_length=128)
    result = train_sft(model, tokenizer, demonstrations(30), config, out_dir=tmp_path)
    assert result.final["rows"] < result.final["n_train"]
    assert result.final["heldout_loss"] < 0.8 * result.final["heldout_loss_before"]


@pytest.mark.slow
def test_should_stop_cancels_and_saves_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    polls: list[int] = []
    steps: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(TrainingCancelled):
        train_sft(
            model,
            tokenizer,
            demonstrations(30),
            CONFIG,
            out_dir=tmp_path / "out",
            progress=lambda step, total, metrics: steps.append(step),
            should_stop=should_stop,
        )
    assert steps == [1, 2]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_non_finite_loss_raises_and_saves_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = float("nan")  # every logit becomes NaN
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train_sft(model, tokenizer, demonstrations(12), CONFIG, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
