"""Training stages as 2 CPU processes under torchrun (gloo): the reward model's loss curve is the
one-process curve on the same global batch, FSDP2 trains and saves an adapter one process loads,
a cancel stops every process, and a rank that dies fails the round with nothing registered.

Each test starts one 2-process run of the tiny model (about 15 s on 2 idle cores)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

from app.artifacts import get_store
from app.config import get_settings
from app.models import Project, RewardModelVersion, RoundState, TrainingRound
from app.rounds.service import parse_config
from tests.conftest import FreshDatabase
from tests.factories import make_round
from tests.rounds.seed import seed_ranked_project
from worker.distributed.entry import PIDS_DIR, parent_of, write_payload
from worker.distributed.launch import DistributedStageFailed, run_distributed
from worker.distributed.training_entries import reward_model_payload
from worker.jobs import rounds as round_jobs
from worker.training.models import load_tokenizer
from worker.training.reward_model import (
    RankingExample,
    RewardModelConfig,
    RewardModelResult,
    load_reward_model,
    score,
    train_reward_model,
)
from worker.training.tiny_model import synthetic_rankings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = RewardModelConfig(
    lr=3e-3, epochs=1, batch_size=4, heldout_fraction=0.25, max_length=64, eval_batch_size=8
)
LOSS_RTOL = 1e-4
"""2 processes against 1 on the same global batch: measured 0.0 (identical floats) on CPU with
one thread per process; the bound leaves room for a reduction order that differs elsewhere."""


@pytest.fixture(scope="module")
def examples() -> list[RankingExample]:
    return [RankingExample(p, r, g) for p, r, g in synthetic_rankings(24, k=3, seed=0, noise=0.1)]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread here, as each rank has (OMP_NUM_THREADS=1), so both runs add alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_two(
    base: Path,
    examples: list[RankingExample],
    payload_dir: Path,
    *,
    fsdp: bool = False,
    should_cancel: Any = lambda: False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reward_model entry on 2 processes: (rank 0's result, its progress lines)."""
    write_payload(
        payload_dir,
        reward_model_payload(
            str(base),
            examples,
            CONFIG,
            out_dir=payload_dir / "out",
            reference=None,
            fsdp=fsdp,
            ensemble=False,
        ),
    )
    lines: list[dict[str, Any]] = []
    result = run_distributed(
        "reward_model",
        payload_dir,
        procs=2,
        on_progress=lines.append,
        should_cancel=should_cancel,
        poll_s=0.1,
    )
    return result, lines


@pytest.fixture(scope="module")
def one_process(
    tiny_model_dir: Path, examples: list[RankingExample], tmp_path_factory: pytest.TempPathFactory
) -> tuple[RewardModelResult, list[float]]:
    """The reward model trained in this process on one thread, as each rank has
    (OMP_NUM_THREADS=1), so both runs add alike: its result and loss curve."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one: list[float] = []
    try:
        alone = train_reward_model(
            str(tiny_model_dir),
            examples,
            CONFIG,
            out_dir=tmp_path_factory.mktemp("one-process"),
            progress=lambda _step, _total, metrics: one.append(metrics["loss"]),
        )
    finally:
        torch.set_num_threads(threads)
    return alone, one


def test_two_processes_give_the_one_process_reward_model_loss_curve(
    one_process: tuple[RewardModelResult, list[float]],
    tiny_model_dir: Path,
    examples: list[RankingExample],
    tmp_path: Path,
) -> None:
    alone, one = one_process

    result, lines = run_two(tiny_model_dir, examples, tmp_path / "two")

    two = [line["metrics"]["loss"] for line in lines]
    assert [line["step"] for line in lines] == list(range(1, alone.steps + 1))
    assert two == pytest.approx(one, rel=LOSS_RTOL)
    assert one[-1] < one[0]  # it learned: the curves compared are not flat
    assert result["steps"] == alone.steps
    assert result["heldout_accuracy"] == pytest.approx(alone.heldout_accuracy, abs=1e-6)
    assert result["train_forward_passes"] == alone.train_forward_passes


def test_fsdp_on_two_processes_saves_an_adapter_that_loads_in_one(
    one_process: tuple[RewardModelResult, list[float]],
    tiny_model_dir: Path,
    examples: list[RankingExample],
    tmp_path: Path,
) -> None:
    alone, one = one_process

    _, lines = run_two(tiny_model_dir, examples, tmp_path / "fsdp", fsdp=True)

    assert [line["metrics"]["loss"] for line in lines] == pytest.approx(one, rel=LOSS_RTOL)
    out = tmp_path / "fsdp" / "out"
    loaded = load_reward_model(out, device="cpu")  # gathered whole, loaded in this process
    prompts = [e.prompt for e in examples[:4] for _ in e.responses]
    responses = [r for e in examples[:4] for r in e.responses]
    kwargs: dict[str, Any] = {"raw": True, "max_length": 64}
    trained = score(loaded, load_tokenizer(str(out)), prompts, responses, **kwargs)
    expected = score(alone.model, alone.tokenizer, prompts, responses, **kwargs)
    assert trained == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert len(set(trained)) > 1  # the trained head, not the zero-initialised one


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its parent has ended too)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_a_cancel_stops_both_processes(
    tiny_model_dir: Path, examples: list[RankingExample], tmp_path: Path
) -> None:
    payload_dir = tmp_path / "cancel"
    pids: list[int] = []

    def cancel_once_both_run() -> bool:
        found = sorted((payload_dir / PIDS_DIR).glob("rank-*"))
        if len(found) < 2 or not (payload_dir / "progress.jsonl").read_text():
            return False  # wait for the first step: both ranks are training
        pids[:] = [int(p.read_text()) for p in found]
        return True

    with pytest.raises(round_jobs.RoundCancelled):
        run_two(tiny_model_dir, examples, payload_dir, should_cancel=cancel_once_both_run)

    assert len(pids) == 2
    assert all(_gone(pid) for pid in pids)
    assert not (payload_dir / "out").exists()


LAUNCHER = """
import sys
from pathlib import Path

from worker.distributed.launch import run_distributed

run_distributed(
    "reward_model", Path(sys.argv[1]), procs=2, on_progress=print, should_cancel=lambda: False
)
"""
"""A throwaway worker: it launches the stage and is SIGKILLed while the ranks start."""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_launcher_leaves_no_torchrun_or_rank_behind(
    tiny_model_dir: Path, examples: list[RankingExample], tmp_path: Path
) -> None:
    payload_dir = tmp_path / "orphans"
    write_payload(
        payload_dir,
        reward_model_payload(
            str(tiny_model_dir),
            examples,
            replace(CONFIG, epochs=20),  # still training when the launcher is killed
            out_dir=payload_dir / "out",
            reference=None,
            fsdp=False,
            ensemble=False,
        ),
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(payload_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    group: list[int] = []
    try:
        found = wait_for(lambda: len(list((payload_dir / PIDS_DIR).glob("rank-*"))) == 2, 120)
        assert found, (payload_dir / "torchrun.log").read_text()
        ranks = [int(p.read_text()) for p in sorted((payload_dir / PIDS_DIR).glob("rank-*"))]
        agents = {parent_of(rank) for rank in ranks}
        assert len(agents) == 1  # both ranks are torchrun's children ...
        agent = agents.pop()
        assert agent is not None
        assert parent_of(agent) == launcher.pid  # ... and torchrun the launcher's
        group = [agent, *ranks]

        launcher.kill()  # SIGKILL: nothing is forwarded
        launcher.wait()

        assert wait_for(lambda: all(_gone(pid) for pid in group), 10), [
            pid for pid in group if not _gone(pid)
        ]
    finally:
        for pid in group:  # a failed test leaves no orphans either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for(done: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `done` every 0.1 s: whether it came true within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_rank_that_dies_fails_the_round_and_registers_nothing(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # to see what the stage leaves
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        project = session.get(Project, project_id)
        assert project is not None
        config = parse_config(
            "reward_ppo", {"reward_model": {"epochs": 1, "max_length": 64}, "min_accuracy_low": 0}
        )
        made = make_round(session, project, "reward_ppo", config={**config, "seed": 0})
        session.commit()
        round_id, number = made.id, made.number
    monkeypatch.setenv("RANKLOOP_TRAIN_PROCS", "2")
    monkeypatch.setenv("RANKLOOP_TEST_DIE_AT_STEP", "2")
    get_settings.cache_clear()
    try:
        with pytest.raises(DistributedStageFailed, match="rank 1") as failed:
            round_jobs.run_stage(round_id, "reward_model")
    finally:
        get_settings.cache_clear()

    assert "dies at step 2" in str(failed.value)
    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.failed
        assert ended.error is not None
        assert "rank 1" in ended.error
        versions = select(RewardModelVersion).where(RewardModelVersion.project_id == project_id)
        assert session.scalars(versions).all() == []
    kept = f"projects/{project_id}/reward_models/round-{number}-failed-run"
    assert kept in str(failed.value)  # the round's error says where to look
    store = get_store()
    assert b"dies at step 2" in store.read_bytes(f"{kept}/errors/rank-1.txt")
    assert b"dies at step 2" in store.read_bytes(f"{kept}/torchrun.log")
    assert store.exists(f"{kept}/payload.json")
    assert sorted(tmp_path.glob("rankloop-*rm-*")) == []  # the local copies are gone


def test_an_sft_round_policy_stage_trains_on_two_processes(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.projects.demonstration_import import parse_demonstrations
    from app.projects.demonstrations import add_demonstrations
    from app.rounds import service
    from tests.factories import make_model_project
    from tests.rounds.test_sft_round import DEMONSTRATIONS

    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=8)
        parsed = parse_demonstrations(DEMONSTRATIONS, "alpaca.jsonl")
        add_demonstrations(session, project_id=project.id, demonstrations=parsed.demonstrations)
        started = service.start_round(
            session,
            project_id=project.id,
            round_type="sft",
            config={"epochs": 1, "batch_size": 4, "eval_prompts": 2, "max_kl": 1000.0},
            enqueue=False,
        )
        session.commit()
        round_id, number = started.id, started.number
    stale = f"projects/{project.id}/rounds/{number}/sft-failed-run"
    get_store().write_bytes(f"{stale}/torchrun.log", b"an earlier attempt failed")
    monkeypatch.setenv("RANKLOOP_TRAIN_PROCS", "2")
    get_settings.cache_clear()
    try:
        next_stage = round_jobs.run_stage(round_id, "policy")
    finally:
        get_settings.cache_clear()

    with app_database.session() as session:
        ran = session.get(TrainingRound, round_id)
        assert ran is not None
        assert ran.error is None
        assert next_stage is not None
        candidate = ran.metrics["candidate"]
        assert candidate["adapter_uri"]  # rank 0's adapter, stored by the worker
        assert candidate["sft"]["steps"] >= 1
        assert candidate["sft"]["heldout_loss"] > 0
    assert not get_store().exists(stale)  # a run that succeeds clears what a failed one kept


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("algorithm", "fsdp"), [("sft", False), ("dpo", True)])
def test_sft_and_dpo_on_two_processes_match_one_and_save_its_adapter(
    algorithm: str, fsdp: bool, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from tests.worker.test_dpo import marker_pairs
    from tests.worker.test_sft import demonstrations
    from worker.distributed.training_entries import adapter_payload
    from worker.policies import load_base
    from worker.training.dpo import DPOConfig, train_dpo
    from worker.training.sft import SFTConfig, train_sft

    sizes: dict[str, Any] = {"epochs": 1, "batch_size": 4, "max_length": 64}
    data: list[Any]
    config: Any
    train: Callable[..., Any]
    if algorithm == "sft":
        data = list(demonstrations(12))
        config, train = SFTConfig(lr=3e-3, **sizes), train_sft
    else:
        data = list(marker_pairs(12, seed=0))
        config, train = DPOConfig(lr=1e-3, **sizes), train_dpo
    one: list[float] = []
    model, tokenizer = load_base(str(tiny_model_dir))
    alone = train(
        model,
        tokenizer,
        data,
        config,
        out_dir=tmp_path / "one",
        progress=lambda _step, _total, metrics: one.append(metrics["loss"]),
    )
    payload_dir = tmp_path / "two"
    write_payload(
        payload_dir,
        adapter_payload(
            algorithm,
            base_model=str(tiny_model_dir),
            merged_adapter_uris=(),
            trust_remote_code=False,
            examples=data,
            config=config,
            init_adapter_dir=None,
            out_dir=payload_dir / "out",
            fsdp=fsdp,
        ),
    )
    lines: list[dict[str, Any]] = []

    result = run_distributed(
        algorithm, payload_dir, procs=2, on_progress=lines.append, should_cancel=lambda: False
    )

    assert [line["metrics"]["loss"] for line in lines] == pytest.approx(one, rel=LOSS_RTOL)
    assert result["final"]["steps"] == alone.final["steps"]
    mine = load_file(alone.adapter_dir / "adapter_model.safetensors")
    theirs = load_file(payload_dir / "out" / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, weight in mine.items():
        torch.testing.assert_close(theirs[name], weight, rtol=1e-4, atol=1e-5)
