"""PPO on the tiny GPT-2 with a known reward: shorter responses score higher.

The tiny model ends only about one response in five within 24 tokens, so "brevity" (and the
missing-EOS penalty) gives PPO a signal it can provably climb in ~15 updates on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from worker.training.generation import (
    GenerationSettings,
    _pad_left,
    find_stop,
    generate_batch,
    stop_strings_for,
)
from worker.training.loop import add_policy_adapter
from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
from worker.training.outcomes import TrainingCancelled, TrainingDiverged
from worker.training.ppo import (
    PPOConfig,
    PPOResult,
    ScoreFn,
    SharedBaseReward,
    ValueHead,
    _rollout,
    forward_response,
    merge_adapter_into_base,
    rollout_sampling_kwargs,
    train_ppo,
)
from worker.training.reward_model import (
    RewardModel,
    RewardModelConfig,
    load_reward_model,
    score,
)

NEW_TOKENS = 24
PROMPTS = [
    "How do I make a cup of tea?",
    "Why is the sky blue?",
    "Tell me about a walk in the park.",
    "What is a good name for a dog?",
    "Explain what a noun is.",
    "How often should I water a cactus?",
    [{"role": "user", "content": "What does a good morning routine look like?"}],
    "Can you suggest a name for a small grey cat?",
]
HELDOUT = ["What is the best way to learn a new language?", "Describe a rainy day."] * 16
CONFIG = PPOConfig(
    steps=15,
    batch_size=16,
    mini_batch_size=8,
    grad_accum=2,
    max_new_tokens=NEW_TOKENS,
    lr=1e-3,
    kl_bound=20.0,
    seed=0,
    device="cpu",
)
SHORT = PPOConfig(
    steps=2, batch_size=8, mini_batch_size=4, max_new_tokens=12, lr=5e-5, seed=3, device="cpu"
)


def brevity(tokenizer: PreTrainedTokenizerBase) -> ScoreFn:
    """Score in [-1, 0]: minus the response's share of the token budget."""

    def score(prompts: list, responses: list[str]) -> list[float]:
        lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
        return [-min(n, NEW_TOKENS) / NEW_TOKENS for n in lengths]

    return score


@pytest.fixture
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PPOResult:
    """One 15-step run on a loaded base (modified in place), shared by the tests below."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    out_dir = tmp_path_factory.mktemp("ppo") / "run"
    return train_ppo(base, tokenizer, PROMPTS, brevity(tokenizer), CONFIG, out_dir=out_dir)


def fixed_sequences(tokenizer: PreTrainedTokenizerBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt + response ids whose last 8 tokens are scored as the response."""
    texts = [
        "User: How do I make a cup of tea?\nAssistant: Boil fresh water and pour it.",
        "User: Why?\nAssistant: Because the air scatters short blue waves more than red.",
    ]
    rows = [tokenizer(t)["input_ids"] for t in texts]
    return _pad_left(rows, tokenizer.pad_token_id)


def response_logprobs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    ids, mask = fixed_sequences(tokenizer)
    with torch.no_grad():
        logprobs, _, _ = forward_response(
            model, None, ids, mask, 8, temperature=1.0, pad_id=tokenizer.pad_token_id
        )
    return logprobs  # (2, 8)


def heldout_score(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> float:
    """Mean brevity on held-out prompts, -1 for a response without EOS, fixed sampling seed."""
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    samples = generate_batch(model, tokenizer, HELDOUT, settings=settings, seed=1234)
    scores = brevity(tokenizer)(HELDOUT, [s.text for s in samples])
    return sum(s if x.finished else -1.0 for s, x in zip(scores, samples, strict=True)) / len(
        samples
    )


# Training moves the policy where the reward points ----------------------------------------


@pytest.mark.slow
def test_ppo_raises_the_score_during_training(trained: PPOResult) -> None:
    scores = [m["score"] for m in trained.metrics_per_step]
    assert len(scores) == CONFIG.steps
    assert sum(scores[-2:]) / 2 > sum(scores[:2]) / 2 + 0.3
    assert trained.metrics_per_step[-1]["eos_share"] > trained.metrics_per_step[0]["eos_share"]


@pytest.mark.slow
def test_trained_policy_beats_the_reference_on_heldout_prompts(
    trained: PPOResult, tokenizer: PreTrainedTokenizerBase
) -> None:
    policy = heldout_score(trained.model, tokenizer)
    with trained.model.disable_adapter():
        reference = heldout_score(trained.model, tokenizer)
    assert policy > reference + 0.3


@pytest.mark.slow
def test_kl_starts_at_zero_stays_finite_and_under_the_bound(trained: PPOResult) -> None:
    kls = [m["kl"] for m in trained.metrics_per_step]
    assert kls[0] == 0.0  # a fresh adapter (LoRA B = 0) is exactly the reference
    assert all(math.isfinite(k) for k in kls)
    assert trained.final["kl_within_bound"] is True
    assert trained.final["max_kl"] < CONFIG.kl_bound


@pytest.mark.slow
def test_every_step_logs_the_ppo_metrics(trained: PPOResult) -> None:
    expected = {
        "score", "kl", "non_score_reward", "entropy", "approx_kl", "clipfrac", "value_loss",
        "explained_variance", "response_length", "eos_share", "kl_coef", "time",
    }  # fmt: skip
    for m in trained.metrics_per_step:
        assert expected <= set(m)
        assert m["kl_coef"] == CONFIG.kl_coef
        assert 0 < m["response_length"] <= NEW_TOKENS


# The one-base arrangement -------------------------------------------------------------------


@pytest.mark.slow
def test_reference_is_the_untouched_base_with_the_adapter_disabled(
    trained: PPOResult, tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    before = response_logprobs(load_causal_lm(str(tiny_model_dir), device="cpu"), tokenizer)
    with trained.model.disable_adapter():
        after = response_logprobs(trained.model, tokenizer)
    policy = response_logprobs(trained.model, tokenizer)

    assert torch.equal(before, after)
    assert not torch.allclose(policy, after)  # training moved the policy, not the reference


@pytest.mark.slow
def test_only_lora_and_value_head_parameters_are_trained(trained: PPOResult) -> None:
    trainable = [n for n, p in trained.model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n and ".policy." in n for n in trainable)


def test_value_head_starts_at_zero() -> None:
    head = ValueHead(16)
    assert torch.count_nonzero(head.linear.weight) == 0
    assert torch.count_nonzero(head.linear.bias) == 0
    assert torch.equal(head(torch.randn(2, 5, 16)), torch.zeros(2, 5))


@pytest.mark.slow
def test_first_rollout_values_are_zero(trained: PPOResult) -> None:
    first = trained.metrics_per_step[0]
    assert first["value_mean"] == 0.0
    assert first["explained_variance"] == 0.0
    assert trained.metrics_per_step[-1]["value_mean"] != 0.0  # and it learns


# Rollout sampling and log-probs (training notes §PPO 3 and 4) ---------------------------------


def test_rollouts_sample_purely_whatever_the_checkpoint_generation_config(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    model = load_causal_lm(str(tiny_model_dir), device="cpu")
    pad = tokenizer.pad_token_id
    kwargs = rollout_sampling_kwargs(SHORT, eos_id=tokenizer.eos_token_id, pad_id=pad)
    assert kwargs["do_sample"] is True
    assert (kwargs["top_k"], kwargs["top_p"], kwargs["repetition_penalty"]) == (0, 1.0, 1.0)
    assert kwargs["min_new_tokens"] == 0
    ids, mask = _pad_left([tokenizer(p)["input_ids"] for p in PROMPTS[:4]], pad)

    def sample(**options: object) -> torch.Tensor:
        torch.manual_seed(7)
        return model.generate(input_ids=ids, attention_mask=mask, **options)

    clean = sample(**kwargs)
    # A checkpoint whose generation_config narrows the distribution (as many hub models do)
    gc = model.generation_config
    gc.top_k, gc.top_p, gc.temperature = 1, 0.1, 0.3
    gc.repetition_penalty, gc.no_repeat_ngram_size, gc.min_new_tokens = 5.0, 2, 12
    assert not torch.equal(clean, sample(do_sample=True, max_new_tokens=12, pad_token_id=pad))
    assert torch.equal(clean, sample(**kwargs))  # the rollout options override all of it


def test_rollouts_end_at_a_stop_string_and_mask_what_follows_as_after_eos(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    config = dataclasses.replace(SHORT, max_new_tokens=32)
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    pad, eos = ensure_pad_token(tokenizer, base), tokenizer.eos_token_id
    model = add_policy_adapter(base, config, dropout=config.lora_dropout, init_adapter_dir=None)
    head = ValueHead(model.get_base_model().config.get_text_config().hidden_size)
    stops = [*stop_strings_for(tokenizer, None), " the"]  # " the": some rows surely stop

    stopped = _rollout(model, head, tokenizer, PROMPTS, config, seed=5, stops=stops)
    free = _rollout(model, head, tokenizer, PROMPTS, config, seed=5, stops=[])

    by_stop = 0
    response = stopped.input_ids[:, -stopped.n_response :]  # (B, R)
    for i, n in enumerate(stopped.response_mask.sum(dim=1).tolist()):
        kept = response[i, :n].tolist()
        assert stopped.response_mask[i, :n].all()
        assert not stopped.response_mask[i, n:].any()
        assert (response[i, n:] == pad).all()
        assert (
            stopped.attention_mask[i, -stopped.n_response :].bool().equal(stopped.response_mask[i])
        )
        assert find_stop(stopped.responses[i], stops) is None
        assert free.input_ids[i, -free.n_response :][:n].tolist() == kept  # the same draws
        if stopped.has_eos[i] and kept[-1] != eos:  # ended by a stop string: its tokens kept
            by_stop += 1
            assert find_stop(tokenizer.decode(kept), stops) is not None
            assert find_stop(tokenizer.decode(kept[:-1]), stops) is None
            assert free.responses[i].startswith(stopped.responses[i])
    assert by_stop > 0


@pytest.mark.slow
def test_train_ppo_scores_responses_cut_at_the_configured_stop_strings(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    scored: list[str] = []

    def score_fn(prompts: list, responses: list[str]) -> list[float]:
        scored.extend(responses)
        return [0.0] * len(responses)

    config = dataclasses.replace(SHORT, steps=1, stop_strings=["e"])
    result = train_ppo(
        str(tiny_model_dir), tokenizer, PROMPTS, score_fn, config, out_dir=tmp_path / "o"
    )

    assert len(scored) == config.batch_size
    assert not any("e" in r for r in scored)
    assert result.final["eos_share"] > 0.5  # a stopped response has ended: no EOS penalty
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["stop_strings"] == ["e"]


def test_forward_response_scores_response_tokens_on_temperature_scaled_logits(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    model = load_causal_lm(str(tiny_model_dir), device="cpu")
    pad, n_response, temperature = tokenizer.pad_token_id, 5, 0.7
    long = tokenizer("User: Why is the sky blue?\nAssistant: Air scatters blue light.")["input_ids"]
    short = long[-9:]
    ids, mask = _pad_left([long, short], pad)  # the short row is left-padded
    with torch.no_grad():
        logprobs, _, _ = forward_response(
            model, None, ids, mask, n_response, temperature=temperature, pad_id=pad
        )
        logits = model(input_ids=torch.tensor([long])).logits[0, -n_response - 1 : -1]  # (R, V)
        alone, _, _ = forward_response(
            model, None, torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long),
            n_response, temperature=temperature, pad_id=pad,
        )  # fmt: skip
        untempered, _, _ = forward_response(
            model, None, ids, mask, n_response, temperature=1.0, pad_id=pad
        )

    # logits[t] predicts token t + 1; divided by the temperature; pad is not a possible token
    logits = logits.float().index_fill(-1, torch.tensor([pad]), float("-inf")) / temperature
    targets = torch.tensor(long[-n_response:]).unsqueeze(-1)
    expected = torch.log_softmax(logits, -1).gather(-1, targets).squeeze(-1)
    torch.testing.assert_close(logprobs[0], expected, atol=1e-4, rtol=1e-4)
    # left padding with its attention mask and position ids changes nothing
    torch.testing.assert_close(logprobs[1], alone[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logprobs, untempered, atol=1e-3)


# Saved files -------------------------------------------------------------------------------


@pytest.mark.slow
def test_saved_adapter_loads_with_peft_and_reproduces_the_policy(
    trained: PPOResult, tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    out_dir = trained.adapter_dir.parent
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    loaded = PeftModel.from_pretrained(base, str(trained.adapter_dir))

    torch.testing.assert_close(
        response_logprobs(loaded, tokenizer), response_logprobs(trained.model, tokenizer)
    )
    head = ValueHead.load(out_dir / "value_head.safetensors")
    assert torch.equal(head.linear.weight, trained.value_head.linear.weight)
    saved = json.loads((out_dir / "metrics.json").read_text())
    assert len(saved["metrics_per_step"]) == CONFIG.steps
    assert saved["final"]["steps_done"] == CONFIG.steps
    assert saved["config"]["seed"] == CONFIG.seed


@pytest.mark.slow
def test_merging_the_adapter_makes_the_base_equal_the_policy(
    trained: PPOResult, tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    merged = merge_adapter_into_base(base, trained.adapter_dir)

    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(
        response_logprobs(merged, tokenizer),
        response_logprobs(trained.model, tokenizer),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.slow
def test_init_adapter_dir_continues_from_that_adapter(
    trained: PPOResult,
    tiny_model_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(CONFIG, steps=1)
    result = train_ppo(
        str(tiny_model_dir), tokenizer, PROMPTS, brevity(tokenizer), config,
        init_adapter_dir=trained.adapter_dir, out_dir=tmp_path / "continued",
    )  # fmt: skip
    first = result.metrics_per_step[0]
    assert first["kl"] > 0  # the policy starts where the last run ended, not at the reference
    assert first["value_mean"] == 0.0  # the value head always starts at zero
    assert first["score"] > trained.metrics_per_step[0]["score"] + 0.3


# Reproducibility, divergence, cancellation -------------------------------------------------


@pytest.mark.slow
def test_same_seed_gives_identical_runs(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    runs = [
        train_ppo(
            str(tiny_model_dir),
            tokenizer,
            PROMPTS,
            brevity(tokenizer),
            SHORT,
            out_dir=tmp_path / f"run{i}",
        )  # fmt: skip
        for i in range(2)
    ]

    def without_time(result: PPOResult) -> list[dict[str, float]]:
        return [{k: v for k, v in m.items() if k != "time"} for m in result.metrics_per_step]

    assert without_time(runs[0]) == without_time(runs[1])
    adapters = [load_file(r.adapter_dir / "adapter_model.safetensors") for r in runs]
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
    heads = [load_file(r.adapter_dir.parent / "value_head.safetensors") for r in runs]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def saved_reward_model(tiny_model_dir: Path, out_dir: Path) -> Path:
    """A reward model on the tiny base with a random (non-zero) adapter and head, saved."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(7)
    rm = RewardModel.create(
        load_causal_lm(str(tiny_model_dir), device="cpu"),
        RewardModelConfig(),
        base_model=str(tiny_model_dir),
    )
    with torch.no_grad():
        for name, p in rm.named_parameters():
            if "lora_B" in name or name.startswith("head."):
                # A fresh adapter adds nothing and a fresh head scores all alike; this one
                # changes scores.
                p.normal_(0.0, 0.2)
    rm.reward_mean, rm.reward_std = 0.5, 2.0
    rm.save(out_dir, tokenizer=tokenizer)
    return out_dir


@pytest.mark.slow
def test_a_reward_model_sharing_the_policys_base_gives_the_separate_models_run(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rm_dir = saved_reward_model(tiny_model_dir, tmp_path / "rm")
    separate = load_reward_model(rm_dir, device="cpu")
    rm_tokenizer = load_tokenizer(str(rm_dir))

    def separate_score(prompts: list, responses: list[str]) -> list[float]:
        return score(separate, rm_tokenizer, prompts, responses)

    runs = [
        train_ppo(
            load_causal_lm(str(tiny_model_dir), device="cpu"),
            load_tokenizer(str(tiny_model_dir)),
            PROMPTS,
            reward,
            SHORT,
            out_dir=tmp_path / name,
        )
        for name, reward in (("separate", separate_score), ("shared", SharedBaseReward(rm_dir)))
    ]

    # Same scores, same updates: with the reward adapter off, the policy's layers compute
    # what they compute without it, and scoring saw the reward adapter alone.
    scores = [[m["score"] for m in r.metrics_per_step] for r in runs]
    assert scores[0] == scores[1]
    assert len(set(scores[0])) > 1  # a scorer that returns a constant would prove nothing
    assert [m["kl"] for m in runs[0].metrics_per_step] == [
        m["kl"] for m in runs[1].metrics_per_step
    ]
    adapters = [load_file(r.adapter_dir / "adapter_model.safetensors") for r in runs]
    assert adapters[0].keys() == adapters[1].keys()
    assert not any("reward" in k for k in adapters[1])
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
    # The result is the policy alone: the reward adapter is gone from its layers.
    assert list(runs[1].model.peft_config) == ["policy"]
    assert not any(".reward." in n for n, _ in runs[1].model.named_parameters())
    # The reward model was not trained: a fresh load still scores as the shared one did.
    texts = ["Boil fresh water and pour it.", "Blue light scatters more."]
    assert score(separate, rm_tokenizer, ["Tea?", "Sky?"], texts) == score(
        load_reward_model(rm_dir, device="cpu"), rm_tokenizer, ["Tea?", "Sky?"], texts
    )


@pytest.mark.slow
def test_non_finite_score_raises_and_saves_nothing(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    def broken(prompts: list, responses: list[str]) -> list[float]:
        return [float("nan")] + [0.0] * (len(responses) - 1)

    with pytest.raises(TrainingDiverged, match="non-finite score") as caught:
        train_ppo(str(tiny_model_dir), tokenizer, PROMPTS, broken, SHORT, out_dir=tmp_path / "o")
    assert caught.value.step == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_should_stop_cancels_between_steps_and_saves_nothing(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    polls: list[int] = []
    done: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) == 2  # let one step run, stop before the second

    with pytest.raises(TrainingCancelled) as caught:
        train_ppo(
            str(tiny_model_dir), tokenizer, PROMPTS, brevity(tokenizer), SHORT,
            out_dir=tmp_path / "o", should_stop=should_stop,
            progress=lambda step, total, metrics: done.append(step),
        )  # fmt: skip
    assert caught.value.steps_done == 1
    assert done == [1]
    assert len(caught.value.metrics_per_step) == 1
    assert not (tmp_path / "o").exists()


# Config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 12, "mini_batch_size": 8}, "multiple of mini_batch_size"),
        ({"mini_batch_size": 8, "grad_accum": 3}, "multiple of grad_accum"),
        ({"temperature": 0.0}, "temperature"),
        ({"lam": 1.5}, "lam"),
        ({"missing_eos_penalty": float("nan")}, "missing_eos_penalty"),
        ({"kl_bound": 0.0}, "kl_bound"),
        ({"stop_strings": ["\nUser:", ""]}, "stop_strings"),
    ],
)
def test_config_rejects_inconsistent_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PPOConfig(**overrides)


def test_micro_batch_size_is_mini_batch_over_grad_accum() -> None:
    assert PPOConfig(batch_size=16, mini_batch_size=8, grad_accum=4).micro_batch_size == 2
