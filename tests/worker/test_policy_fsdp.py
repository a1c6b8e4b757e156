"""The policy stages under FSDP2 (`fsdp=True`) on 2 CPU processes (gloo, torchrun).

FSDP turns every forward and backward pass into a collective, so the ranks must step in
lockstep (worker/training/shards.py). What is checked: PPO (value head sharded too) and RLOO
give one process's per-step figures and adapters on the same global batch, with the same
tolerance as the DDP comparison (tests/worker/test_distributed_ppo.py: 1e-4 relative + 1e-5
absolute on every figure, 1e-4 absolute on adapter weights; FSDP averages the gradients where
DDP sums them, the same float sums in another order); and GRPO through the stage's own entry
with uneven shards (3 prompts on 2 ranks), the reward model on the policy's base and a
mini-batch of one micro-batch, which only a lockstep deal gets through without hanging, saves
an adapter one process loads.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.distributed_policy_run import PPO, RLOO
from tests.worker.test_distributed_ppo import (
    _assert_adapters_match,
    _assert_curves_match,
    _figures,
    one_process_runs,
    torchrun_policy_runs,
)
from worker.distributed.context import DistContext
from worker.training.shards import dealt, lockstep_rows

ROOT = Path(__file__).resolve().parents[2]


def _ctx(rank: int, world_size: int) -> DistContext:
    """Rank `rank` of `world_size` (no process group: `dealt` reads the numbers only)."""
    return DistContext(rank, world_size, rank, torch.device("cpu"))


def test_fsdp_deal_runs_as_many_passes_on_every_rank_and_keeps_one_processs_weights() -> None:
    micro = list(torch.arange(6).split(2))  # 3 micro-batches over 2 ranks
    ranks = [dealt(micro, _ctx(r, 2), fsdp=True) for r in (0, 1)]

    assert [len(passes) for passes in ranks] == [2, 2]
    assert ranks[1][1] == (micro[0], 0.0)  # rank 1's second pass only keeps step
    # FSDP averages over the 2 ranks: the real weights sum to one process's 3 × 1/3
    real = [w for passes in ranks for _, w in passes if w]
    assert sum(real) / 2 == pytest.approx(1.0)
    assert len(real) == 3
    assert [len(dealt(micro, _ctx(r, 2))) for r in (0, 1)] == [2, 1]


def test_lockstep_rows_is_the_largest_shard() -> None:
    assert lockstep_rows(3, _ctx(1, 2), unit=4) == 8
    assert lockstep_rows(8, _ctx(0, 2)) == 4
    assert lockstep_rows(5, None) == 5


def test_a_judge_scored_round_refuses_fsdp_at_stage_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge-scored policy stage trains in one process: with FSDP asked for it fails at once
    (before loading the base) instead of loading a base meant to be sharded whole."""
    from app.config import get_settings
    from worker.jobs.round_trainers import _judged_in_process

    job: Any = SimpleNamespace(config=SimpleNamespace(reward_judge_id=1))
    monkeypatch.setenv("RANKLOOP_TRAIN_FSDP", "true")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="RANKLOOP_TRAIN_FSDP"):
            _judged_in_process(job)
    finally:
        monkeypatch.delenv("RANKLOOP_TRAIN_FSDP")
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def fsdp_two_processes(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PPO then RLOO under FSDP, each rank's figures in <out>/<kind>-rank<r>.json."""
    out = tmp_path_factory.mktemp("fsdp-two-procs")
    return torchrun_policy_runs(tiny_model_dir, out, "fsdp", timeout=300)


@pytest.fixture(scope="module")
def fsdp_one_process(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_process_runs(tiny_model_dir, tmp_path_factory.mktemp("fsdp-one-proc"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo", "rloo"])
def test_fsdp_on_two_processes_gives_one_processs_loss_curve_and_adapter(
    kind: str, fsdp_one_process: Path, fsdp_two_processes: Path
) -> None:
    one = _figures(fsdp_one_process / f"{kind}.json")["metrics"]
    assert len(one) == (PPO.steps if kind == "ppo" else RLOO.steps)
    for rank in (0, 1):
        two = _figures(fsdp_two_processes / f"{kind}-rank{rank}.json")["metrics"]
        _assert_curves_match(one, two)
    _assert_adapters_match(fsdp_one_process / kind, fsdp_two_processes / kind)
    trained = load_file(fsdp_two_processes / kind / "policy" / "adapter_model.safetensors")
    assert any(t.abs().max() > 0 for name, t in trained.items() if "lora_B" in name)


@pytest.mark.slow
def test_fsdp_saves_ppos_value_head_whole(fsdp_one_process: Path, fsdp_two_processes: Path) -> None:
    one = load_file(fsdp_one_process / "ppo" / "value_head.safetensors")
    two = load_file(fsdp_two_processes / "ppo" / "value_head.safetensors")
    assert {k: v.shape for k, v in two.items()} == {k: v.shape for k, v in one.items()}
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-4), name


@pytest.mark.slow
def test_fsdp_grpo_entry_with_uneven_shards_saves_an_adapter_one_process_loads(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The stage's path (payload -> torchrun -> policy_entries) with fsdp: rank 0 samples 2
    prompts' groups and rank 1 one, the reward adapter shares the sharded base, and the second
    mini-batch of each pass is one micro-batch (rank 1 runs it again at weight 0), and rank
    1's 2 rollout rows take one log-prob pass of 2 where rank 0's 4 take two."""
    from peft import PeftModel

    from tests.worker.test_distributed_ppo import run_grpo_entry
    from worker.training.grpo import GRPOConfig
    from worker.training.models import load_causal_lm

    config = GRPOConfig(
        steps=2, batch_size=3, group_size=2, mini_batch_size=4, grad_accum=2, epochs=1,
        max_new_tokens=8, seed=1,
    )  # fmt: skip
    deadline = time.monotonic() + 240  # a rank out of step would hang: cancel instead
    result, lines = run_grpo_entry(
        tiny_model_dir,
        tmp_path,
        config,
        fsdp=True,
        should_cancel=lambda: time.monotonic() > deadline,
    )

    assert result["final"]["steps_done"] == config.steps
    assert [line["step"] for line in lines] == [1, 2]
    saved = load_file(tmp_path / "adapter" / "policy" / "adapter_model.safetensors")
    assert not any("reward" in name for name in saved)  # the policy adapter alone
    assert any(t.abs().max() > 0 for name, t in saved.items() if "lora_B" in name)
    model = PeftModel.from_pretrained(
        load_causal_lm(str(tiny_model_dir), device="cpu"), str(tmp_path / "adapter" / "policy")
    )
    loaded = dict(model.named_parameters())
    for name, tensor in saved.items():  # peft's names carry the adapter: ...lora_B.default.weight
        match = [p for n, p in loaded.items() if n.replace(".default", "") == name]
        assert len(match) == 1, name
        assert torch.equal(match[0].detach(), tensor), name
