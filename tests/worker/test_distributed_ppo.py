"""The policy stages over 2 CPU processes (gloo, torchrun) against one process, same global batch.

What is compared: PPO's and RLOO's per-step figures (score, KL, policy loss, value loss, grad
norm) and the saved adapters. Sampling is made independent of sharding
(`distributed_policy_run.shard_independent_sampling`), so both runs draw the same responses;
everything distribution changes is real: sharded sampling and scoring, the gathered batch,
GAE/whitening and group baselines over it, micro-batches dealt out to the ranks, gradients
summed across them, figures reduced, rank 0 alone saving.
Tolerance: 1e-4 relative + 1e-5 absolute on every figure, 1e-4 absolute on adapter weights
(gradients are the same sums in another order; Adam carries the float difference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.distributed_policy_run import RLOO, run

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("score", "kl", "policy_loss", "grad_norm", "entropy", "response_length")
REL, ABS = 1e-4, 1e-5


def torchrun_policy_runs(tiny_model_dir: Path, out: Path, *extra: str, timeout: int) -> Path:
    """PPO then RLOO on 2 processes (tests/worker/distributed_policy_run.py; `extra`: "fsdp"),
    each rank's figures in <out>/<kind>-rank<r>.json, rank 0's adapter in <out>/<kind>."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--standalone", "-m", "tests.worker.distributed_policy_run",
            str(tiny_model_dir), str(out), *extra,
        ],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def one_process_runs(tiny_model_dir: Path, out: Path) -> Path:
    """The same PPO and RLOO runs in this process: figures in <out>/<kind>.json."""
    for kind in ("ppo", "rloo"):
        (out / f"{kind}.json").write_text(json.dumps(run(kind, tiny_model_dir, out / kind)))
    return out


@pytest.fixture(scope="module")
def two_processes(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torchrun_policy_runs(tiny_model_dir, tmp_path_factory.mktemp("two-procs"), timeout=600)


@pytest.fixture(scope="module")
def one_process(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_process_runs(tiny_model_dir, tmp_path_factory.mktemp("one-proc"))


def _figures(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _assert_curves_match(one: list[dict[str, float]], two: list[dict[str, float]]) -> None:
    assert len(one) == len(two)
    for step_one, step_two in zip(one, two, strict=True):
        for key in COMPARED:
            assert step_two[key] == pytest.approx(step_one[key], rel=REL, abs=ABS), (
                key,
                step_one["step"],
            )


def _assert_adapters_match(one: Path, two: Path) -> None:
    a = load_file(one / "policy" / "adapter_model.safetensors")
    b = load_file(two / "policy" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4), name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo", "rloo"])
def test_two_processes_give_one_processs_loss_curve_and_adapter(
    kind: str, one_process: Path, two_processes: Path
) -> None:
    one = _figures(one_process / f"{kind}.json")["metrics"]
    for rank in (0, 1):
        _assert_curves_match(one, _figures(two_processes / f"{kind}-rank{rank}.json")["metrics"])
    _assert_adapters_match(one_process / kind, two_processes / kind)
    if kind == "ppo":
        assert load_file(two_processes / "ppo" / "value_head.safetensors").keys()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo", "rloo"])
def test_each_rank_scores_its_own_half_of_every_global_batch(
    kind: str, one_process: Path, two_processes: Path
) -> None:
    one = _figures(one_process / f"{kind}.json")["scored"]
    ranks = [_figures(two_processes / f"{kind}-rank{r}.json")["scored"] for r in (0, 1)]
    for step, batch in enumerate(one):
        halves = [ranks[0][step], ranks[1][step]]
        assert [len(h) for h in halves] == [len(batch) // 2] * 2
        assert sorted(halves[0] + halves[1]) == sorted(batch)


@pytest.mark.slow
def test_rloo_keeps_the_k_samples_of_a_prompt_on_one_rank(two_processes: Path) -> None:
    k = RLOO.group_size
    ranks = [_figures(two_processes / f"rloo-rank{r}.json")["scored"] for r in (0, 1)]
    for step in range(RLOO.steps):
        rows = [ranks[0][step], ranks[1][step]]
        for scored in rows:
            groups = [scored[i : i + k] for i in range(0, len(scored), k)]
            assert all(len(set(g)) == 1 and len(g) == k for g in groups)
        assert not set(rows[0]) & set(rows[1])  # no prompt split across ranks


def run_grpo_entry(
    tiny_model_dir: Path,
    tmp_path: Path,
    config: Any,
    *,
    fsdp: bool = False,
    should_cancel: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GRPO through the stage's path (payload -> torchrun -> policy_entries) on 2 processes,
    3 prompts, the reward model an adapter on the policy's base: (rank 0's result, progress
    lines); the adapter lands in tmp_path / "adapter" / "policy"."""
    from tests.worker.test_ppo import saved_reward_model
    from worker.distributed.entry import write_payload
    from worker.distributed.launch import run_distributed
    from worker.distributed.policy_entries import policy_payload

    payload_dir = tmp_path / "payload"
    write_payload(
        payload_dir,
        policy_payload(
            "grpo",
            base_model=str(tiny_model_dir),
            merged_adapter_uris=(),
            trust_remote_code=False,
            prompts=["Why is the sky blue?", "Name a dog.", "Tea or coffee?"],
            config=config,
            reward_dir=saved_reward_model(tiny_model_dir, tmp_path / "rm"),
            reward_on_policy_base=True,  # one base copy per rank: policy, reference, reward
            init_adapter_dir=None,
            out_dir=tmp_path / "adapter",
            fsdp=fsdp,
        ),
    )
    lines: list[dict[str, Any]] = []
    result = run_distributed(
        "grpo", payload_dir, procs=2, on_progress=lines.append, should_cancel=should_cancel
    )
    return result, lines


@pytest.mark.slow
def test_the_grpo_entry_runs_on_two_processes_and_saves_an_adapter_one_process_loads(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The stage's path: payload -> torchrun -> policy_entries -> rank 0's result."""
    from peft import PeftModel

    from worker.training.grpo import GRPOConfig
    from worker.training.models import load_causal_lm

    config = GRPOConfig(
        steps=2, batch_size=2, group_size=2, mini_batch_size=4, epochs=1, max_new_tokens=8,
        seed=1,
    )  # fmt: skip
    result, lines = run_grpo_entry(tiny_model_dir, tmp_path, config)

    assert result["final"]["steps_done"] == config.steps
    assert [line["step"] for line in lines] == [1, 2]  # rank 0's lines only
    model = PeftModel.from_pretrained(
        load_causal_lm(str(tiny_model_dir), device="cpu"), str(tmp_path / "adapter" / "policy")
    )
    assert any("lora_B" in name for name, _ in model.named_parameters())
