"""RLOO and GRPO stages on the tiny GPT-2 with PPO's known reward (shorter is better, see
tests/worker/test_ppo.py): the score rises, the KL to the reference stays bounded, and the
one-base arrangement (reference = adapter disabled, no value head) holds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from tests.worker.test_ppo import NEW_TOKENS, brevity, response_logprobs
from tests.worker.test_ppo import PROMPTS as PPO_PROMPTS
from worker.training.critic_free import CriticFreeResult
from worker.training.grpo import GRPOConfig, train_grpo
from worker.training.models import load_causal_lm, load_tokenizer
from worker.training.outcomes import TrainingCancelled
from worker.training.prompts import Prompt
from worker.training.rloo import RLOOConfig, train_rloo

PROMPTS = cast(list[Prompt], PPO_PROMPTS)
STAGE: dict[str, Any] = {
    "steps": 10,
    "batch_size": 4,
    "group_size": 4,
    "mini_batch_size": 16,
    "grad_accum": 2,
    "epochs": 2,
    "max_new_tokens": NEW_TOKENS,
    "lr": 1e-3,
    "kl_bound": 20.0,
    "seed": 0,
    "device": "cpu",
}


@pytest.fixture
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_model_dir))


def _run(tiny_model_dir: Path, out_dir: Path, algorithm: str) -> CriticFreeResult:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    if algorithm == "rloo":
        return train_rloo(
            base, tokenizer, PROMPTS, brevity(tokenizer), RLOOConfig(**STAGE), out_dir=out_dir
        )
    config = GRPOConfig(**STAGE, dr_grpo=algorithm == "dr_grpo")
    return train_grpo(base, tokenizer, PROMPTS, brevity(tokenizer), config, out_dir=out_dir)


@pytest.fixture(scope="module", params=["rloo", "grpo", "dr_grpo"])
def trained(
    request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> CriticFreeResult:
    """One 10-step run per algorithm (RLOO with the KL in the reward, GRPO with it in the loss)."""
    return _run(tiny_model_dir, tmp_path_factory.mktemp(request.param) / "run", request.param)


@pytest.mark.slow
def test_the_stage_raises_the_score_with_a_bounded_kl(trained: CriticFreeResult) -> None:
    scores = [m["score"] for m in trained.metrics_per_step]
    kls = [m["kl"] for m in trained.metrics_per_step]
    assert len(scores) == STAGE["steps"]
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.2
    assert kls[0] == 0.0  # a fresh adapter (LoRA B = 0) is exactly the reference
    assert all(math.isfinite(k) for k in kls)
    assert trained.final["kl_within_bound"] is True
    assert trained.final["max_kl"] < STAGE["kl_bound"]


@pytest.mark.slow
def test_only_the_policy_adapter_trains_and_the_reference_is_the_base(
    trained: CriticFreeResult, tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    trainable = [n for n, p in trained.model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n and ".policy." in n for n in trainable)
    before = response_logprobs(load_causal_lm(str(tiny_model_dir), device="cpu"), tokenizer)
    with trained.model.disable_adapter():
        assert torch.equal(response_logprobs(trained.model, tokenizer), before)
    assert not torch.allclose(response_logprobs(trained.model, tokenizer), before)


@pytest.mark.slow
def test_the_run_saves_an_adapter_and_its_metrics_without_a_value_head(
    trained: CriticFreeResult,
) -> None:
    out_dir = trained.adapter_dir.parent
    assert (trained.adapter_dir / "adapter_config.json").exists()
    assert not (out_dir / "value_head.safetensors").exists()
    saved = json.loads((out_dir / "metrics.json").read_text())
    assert saved["algorithm"] in ("RLOO", "GRPO")
    assert len(saved["metrics_per_step"]) == STAGE["steps"]
    for m in trained.metrics_per_step:
        assert {"score", "kl", "kl_loss", "clipfrac", "entropy", "eos_share"} <= set(m)
        assert 0 < m["response_length"] <= NEW_TOKENS


def test_a_cancelled_run_stops_before_its_next_step_and_writes_nothing(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    config = RLOOConfig(**{**STAGE, "steps": 3, "max_new_tokens": 6, "epochs": 1})
    seen: list[int] = []

    with pytest.raises(TrainingCancelled) as cancelled:
        train_rloo(
            base, tokenizer, PROMPTS, brevity(tokenizer), config, out_dir=tmp_path / "run",
            progress=lambda step, steps, metrics: seen.append(step),
            should_stop=lambda: len(seen) >= 1,
        )  # fmt: skip
    assert cancelled.value.steps_done == 1
    assert seen == [1]
    assert not (tmp_path / "run").exists()


def test_configs_refuse_a_group_without_others() -> None:
    with pytest.raises(ValueError, match="group_size"):
        RLOOConfig(group_size=1)
    with pytest.raises(ValueError, match="kl_in"):
        GRPOConfig(kl_in="nowhere")  # type: ignore[arg-type]
    assert GRPOConfig().kl_in == "loss"
    assert RLOOConfig().kl_in == "reward"
