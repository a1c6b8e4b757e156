"""`rankloop demo --simulate --judge ...`: pure RLAIF, a judge ranks in place of the simulated
people and the round trains on its rankings only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.models import Judge, Project, Ranking, TrainingRound
from rankloop.cli import app
from rankloop.simulation import LOOP_JUDGE_PROJECT, judge_form


def test_judge_specs_read_as_judges() -> None:
    simulated = judge_form("simulated:0.8", preference="length:30", seed=3)
    assert (simulated.backend, simulated.agreement_floor) == ("simulated", None)
    assert simulated.options == {"preference": "length:30", "agreement": 0.8, "seed": 3}
    local = judge_form("hf:/models/judge", preference="length:30", seed=0)
    assert (local.backend, local.model, local.method) == ("hf", "/models/judge", "logprob")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--simulate", "--judge", "simulated:1.5"], "simulated:AGREEMENT takes a number in 0..1"),
        (["--simulate", "--judge", "simulated:most"], "simulated:AGREEMENT takes a number"),
        (["--simulate", "--judge", "gpt:4"], "--judge takes simulated:AGREEMENT or hf:PATH"),
        (["--simulate", "--judge", "hf:"], "--judge takes simulated:AGREEMENT or hf:PATH"),
        (["--judge", "simulated:0.8"], "--judge runs with --simulate"),
    ],
)
def test_demo_refuses_a_bad_judge_before_starting(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["demo", *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Data directory" not in result.output  # nothing was created


# The demo's loop at test size: the 24 demo prompts, 4 samples each, a round of two PPO updates.
SMALL_LOOP = textwrap.dedent(
    """
    import sys

    import rankloop.simulation as loop

    loop.LOOP_PROMPTS = 24
    loop.LOOP_PROJECT_SETTINGS = {
        **loop.LOOP_PROJECT_SETTINGS, "samples_per_prompt": 4, "max_new_tokens": 8
    }
    loop.TINY_ROUND.clear()
    loop.TINY_ROUND.update({
        "eval_prompts": 2,
        "max_kl": 1000.0,
        "min_score_gain": -1000.0,
        "min_accuracy_low": 0.0,
        "reward_model": {"epochs": 2, "max_length": 64},
        # a large step: two updates must move the policy enough for the gate to see it
        "ppo": {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
                "max_new_tokens": 6, "learning_rate": 1e-2},
    })
    sys.argv = ["rankloop", *sys.argv[1:]]
    from rankloop.cli import main

    main()
    """
)


@pytest.mark.slow
def test_demo_simulate_with_a_judge_trains_a_round_on_its_rankings_alone(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "tiny").symlink_to(tiny_model_path)  # the demo's model, already built
    database = tmp_path / "demo.db"
    env = {
        **os.environ,
        "RANKLOOP_DATA_DIR": str(data),
        "RANKLOOP_DATABASE_URL": f"sqlite:///{database}",
    }
    env.pop("RANKLOOP_BROKER_URL", None)
    script = tmp_path / "small_loop.py"
    script.write_text(SMALL_LOOP)
    args = ["demo", "--simulate", "--judge", "simulated:0.9", "--rounds", "1"]

    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )

    output = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "A judge (simulated:0.9) ranks in place of people" in output
    assert "Round 1 done" in output, output
    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        project = session.scalars(select(Project).where(Project.name == LOOP_JUDGE_PROJECT)).one()
        assert project.judge_only
        judge = session.scalars(select(Judge).where(Judge.project_id == project.id)).one()
        sources = set(
            session.scalars(select(Ranking.source).where(Ranking.project_id == project.id))
        )
        judged = session.scalars(select(Ranking.judge_id).where(Ranking.project_id == project.id))
        training_round = session.scalars(
            select(TrainingRound).where(TrainingRound.project_id == project.id)
        ).one()
        assert sources == {"ai"}
        assert set(judged) == {judge.id}
        assert training_round.state.value == "done", training_round.error
        assert training_round.metrics["reward_model_summary"]["n_train"] > 0
    engine.dispose()
