"""A judge as a round's reward (`reward_judge_id`): a round start refuses a judge that cannot be
the reward (unknown, another project's, paused, a ranking judge on PPO) with a 422 and creates
nothing; a GRPO round scored by a simulated judge trains no reward model and registers a
version whose lineage names the judge and its prompt version; the round page says which judge
scored it in place of a reward model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.errors import InvalidInput
from app.judges import service as judges
from app.judges.schemas import JudgeUpdate
from app.models import (
    PolicyStatus,
    Project,
    RewardModelVersion,
    RoundState,
    TrainingRound,
)
from app.ratings import repository as ratings_repository
from app.rounds import service
from rankloop.cli import app as cli
from tests.conftest import FreshDatabase
from tests.factories import make_judge, make_project, make_ready_project, make_round
from tests.rounds.conftest import section, tiny_critic_free_round
from tests.rounds.seed import seed_ranked_project
from tests.worker.judging.test_openai import KEY, Reply, ScriptedServer
from worker.jobs import rounds as round_jobs
from worker.jobs.judge_reward import judge_lineage, round_judge
from worker.training.judge_reward import flat


def _judge(session: Session, project_id: int, **fields: Any) -> int:
    """A simulated judge that prefers answers saying "good" (tests.factories.make_judge)."""
    return make_judge(session, project_id, preference="keyword:good", **fields).id


def _start(session: Session, project_id: int, round_type: str, judge_id: int) -> TrainingRound:
    """A round of `round_type` whose reward is the judge, started but not enqueued."""
    return service.start_round(
        session,
        project_id=project_id,
        round_type=round_type,
        config={"reward_judge_id": judge_id},
        enqueue=False,
    )


def _refusal(session: Session, project_id: int, round_type: str, judge_id: int) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        _start(session, project_id, round_type, judge_id)
    rounds = session.scalars(select(TrainingRound).where(TrainingRound.project_id == project_id))
    assert rounds.all() == []
    assert refused.value.status_code == 422
    assert [d["field"] for d in refused.value.details] == ["reward_judge_id"]
    return refused.value


def test_an_unknown_judge_is_refused(db_session: Session) -> None:
    project = make_ready_project(db_session)

    refused = _refusal(db_session, project.id, "reward_grpo", 10**6)

    assert "has no judge 1000000" in refused.message


def test_another_projects_judge_is_refused(db_session: Session) -> None:
    project, other = make_ready_project(db_session), make_project(db_session)
    foreign = _judge(db_session, other.id)

    refused = _refusal(db_session, project.id, "reward_rloo", foreign)

    assert f"has no judge {foreign}" in refused.message


def test_a_paused_judge_is_refused_with_its_reason(db_session: Session) -> None:
    project = make_ready_project(db_session)
    judge_id = _judge(db_session, project.id)
    judges.pause_judge(db_session, judge_id=judge_id, reason="agreement 0.41 below the floor")

    refused = _refusal(db_session, project.id, "reward_grpo", judge_id)

    assert "paused (agreement 0.41 below the floor)" in refused.message


@pytest.mark.parametrize("method", ["listwise", "pairwise"])
def test_ppo_refuses_a_judge_that_only_ranks(db_session: Session, method: str) -> None:
    project = make_ready_project(db_session)
    judge_id = _judge(db_session, project.id, method=method)

    refused = _refusal(db_session, project.id, "reward_ppo", judge_id)

    assert "PPO needs a judge that scores answers (a local 'hf' judge with method logprob)" in (
        refused.message
    )


def test_a_judge_round_needs_no_rankings_and_sizes_on_the_prompts(db_session: Session) -> None:
    project = make_ready_project(db_session, prompts=40, rankings=0)
    ranking_judge = _judge(db_session, project.id)

    started = _start(db_session, project.id, "reward_grpo", ranking_judge)

    assert started.config["reward_judge_id"] == ranking_judge
    # 4 rollouts per training prompt (30 of 40), not per ranking (none): 256 at least
    assert started.config["grpo"]["steps"] == round(256 / (4 * 4))
    assert "30" in started.metrics["sizing"]["grpo.steps"]


def test_a_logprob_judge_may_be_ppos_reward(db_session: Session) -> None:
    project = make_ready_project(db_session)
    judge_id = _judge(db_session, project.id, backend="hf", model="tiny", method="logprob")

    started = _start(db_session, project.id, "reward_ppo", judge_id)

    assert started.config["reward_judge_id"] == judge_id


def test_the_form_offers_the_judge_and_the_api_refuses_a_bad_one_with_422(
    client: httpx.Client,
    db_session: Session,
    writer: dict[str, str],
    sent_stages: list[tuple[int, str]],
) -> None:
    project = make_ready_project(db_session)
    db_session.commit()

    response = client.post(
        f"/api/v1/projects/{project.id}/rounds",
        json={"type": "reward_rloo", "reward_judge_id": 999999},
        headers=writer,
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["reward_judge_id"]
    assert sent_stages == []
    assert db_session.scalars(select(TrainingRound)).all() == []


def test_the_round_form_has_a_reward_judge_field(client: httpx.Client, project: Project) -> None:
    for round_type in ("reward_ppo", "reward_rloo", "reward_grpo"):
        fragment = client.get(
            f"/admin/projects/{project.id}/rounds",
            params={"type": round_type},
            headers={"HX-Request": "true"},
        ).text
        assert 'name="reward_judge_id"' in fragment, round_type


def test_the_command_line_takes_the_judge_and_refuses_a_ranking_one_on_ppo(
    app_database: FreshDatabase,
) -> None:
    with app_database.session() as session:
        project = make_ready_project(session)
        judge_id = _judge(session, project.id, method="listwise")
        session.commit()
        project_id = project.id
    argv = ["round", "start", "--project", str(project_id), "--type", "reward_ppo"]

    result = CliRunner().invoke(cli, [*argv, "--set", f"reward_judge_id={judge_id}"])

    assert result.exit_code == 1
    assert "PPO needs a judge that scores answers" in " ".join(result.output.split())
    with app_database.session() as session:
        rounds = session.scalars(
            select(TrainingRound).where(TrainingRound.project_id == project_id)
        )
        assert rounds.all() == []


def test_the_round_page_says_the_judge_scored_it_in_place_of_a_reward_model(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    judge = make_judge(db_session, project.id, name="strict critic")
    data = JudgeUpdate(principles=["Prefer the shorter answer."])  # prompt version 2
    judges.update_judge(db_session, judge_id=judge.id, data=data)
    metrics = {
        "reward_judge": judge_lineage(judge),
        "reward_model_skipped": f"judge 'strict critic' (id {judge.id}, prompt version 2) is "
        "the reward: no reward model trained",
        "candidate": {"train_procs": 1, "train_procs_reason": "scored by a judge: one process"},
    }
    judged = make_round(db_session, project, "reward_ppo", state=RoundState.done, metrics=metrics)
    trained = make_round(db_session, project, "reward_ppo", state=RoundState.done)
    db_session.commit()

    page = client.get(f"/admin/rounds/{judged.id}").text
    other = client.get(f"/admin/rounds/{trained.id}").text

    stage = section(page, 'id="round-reward-model-stage">', "</p>")
    assert stage == "Reward model stage: skipped: scored by judge strict critic (prompt v2)"
    assert 'id="round-reward-model-stage"' not in other
    procs = section(page, 'id="round-policy-procs">', "</p>")
    assert procs == "Policy stage: one process: scored by a judge: one process"
    assert 'id="round-policy-procs"' not in other


# A round on the tiny model, every stage in this process ------------------------------------


@pytest.mark.slow
def test_a_grpo_round_scored_by_a_judge_registers_a_version_naming_it(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        project = session.get(Project, project_id)
        assert project is not None
        project.stop_strings = [" "]  # the tiny model seldom writes EOS (test_critic_free_rounds)
        judge_id = _judge(session, project_id)
        training_round = service.start_round(
            session,
            project_id=project_id,
            round_type="reward_grpo",
            config=tiny_critic_free_round("grpo", reward_judge_id=judge_id),
            enqueue=False,
        )
        session.commit()
        round_id = training_round.id

    round_jobs.run_round(round_id, "reward_model")

    with app_database.session() as session:
        done = session.get(TrainingRound, round_id)
        assert done is not None
        assert done.state == RoundState.done, done.error
        metrics = done.metrics
        assert "judge" in metrics["reward_model_skipped"]
        assert metrics["reward_judge"]["id"] == judge_id
        assert metrics["reward_judge"]["prompt_version"] == 1
        candidate = metrics["candidate"]
        assert candidate["grpo"]["steps_done"] == 2
        assert candidate["reward_judge"]["id"] == judge_id
        assert candidate["judge_groups_scored"] == 2 * 2
        assert candidate["judge_malformed_groups"] == 0
        assert metrics["gate"]["passed"] is True
        assert "judge" in metrics["gate"]["scorer"]
        assert "gate_reward_model" not in metrics
        assert (
            session.scalars(
                select(RewardModelVersion).where(RewardModelVersion.round_id == round_id)
            ).all()
            == []
        )
        versions = ratings_repository.versions(session, project_id)
        assert [(v.number, v.status) for v in versions] == [
            (1, PolicyStatus.retired),
            (2, PolicyStatus.current),
        ]
        new = versions[1]
        assert new.round_id == round_id
        assert new.reward_model_version_id is None
        assert new.metrics["reward_judge"] == {
            "id": judge_id,
            "name": metrics["reward_judge"]["name"],
            "backend": "simulated",
            "model": "simulated",
            "method": "listwise",
            "prompt_version": 1,
        }


@pytest.mark.slow
def test_a_judge_scored_rloo_round_trains_in_one_process_under_train_procs_2_and_says_why(
    app_database: FreshDatabase, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge is loaded in the worker, not on torchrun's ranks: the policy stage trains
    here, launches no process, and the candidate's summary says so."""
    from app.config import get_settings
    from worker.distributed import launch

    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path)
        project = session.get(Project, project_id)
        assert project is not None
        project.stop_strings = [" "]  # the tiny model seldom writes EOS (test_critic_free_rounds)
        training_round = service.start_round(
            session,
            project_id=project_id,
            round_type="reward_rloo",
            config=tiny_critic_free_round("rloo", reward_judge_id=_judge(session, project_id)),
            enqueue=False,
        )
        session.commit()
        round_id = training_round.id
    launched: list[str] = []

    def no_torchrun(entry: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        launched.append(entry)
        raise AssertionError("a judge-scored round launched torchrun")

    monkeypatch.setattr(launch, "run_distributed", no_torchrun)
    monkeypatch.setenv("RANKLOOP_TRAIN_PROCS", "2")
    get_settings.cache_clear()
    try:
        assert round_jobs.run_stage(round_id, "reward_model") == "policy"  # skipped: a judge
        assert round_jobs.run_stage(round_id, "policy") == "evaluating"
    finally:
        get_settings.cache_clear()

    assert launched == []
    with app_database.session() as session:
        ran = session.get(TrainingRound, round_id)
        assert ran is not None
        assert ran.error is None
        candidate = ran.metrics["candidate"]
    assert candidate["rloo"]["steps_done"] == 2
    assert candidate["judge_groups_scored"] == 2 * 2
    assert candidate["train_procs"] == 1
    assert "scored by a judge" in candidate["train_procs_reason"]


# An endpoint judge, loaded in the worker process -------------------------------------------


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible endpoint on loopback (tests/worker/judging/test_openai.py)."""
    srv = ScriptedServer()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_an_endpoint_judge_ranks_rollouts_with_the_key_from_the_workers_environment(
    app_database: FreshDatabase, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_database.session() as session:
        project = make_ready_project(session)
        judge_id = _judge(
            session, project.id, backend="openai", model="judge-model",
            base_url=server.base_url, api_key_env="H3_REWARD_JUDGE_KEY",
        )  # fmt: skip
        session.commit()
        project_id = project.id
    monkeypatch.delenv("H3_REWARD_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="H3_REWARD_JUDGE_KEY is not set"):
        round_judge(judge_id, project_id)
    monkeypatch.setenv("H3_REWARD_JUDGE_KEY", KEY)
    server.script = [Reply("RANKING: 3 > 1 > 2")]

    reward, lineage = round_judge(judge_id, project_id)
    scores = flat(reward, 3)(["Name a fruit."] * 3, ["Apple.", "A rock.", "Banana."])

    assert scores[2] > scores[0] > scores[1]  # the endpoint's order, centred
    assert sum(scores) == pytest.approx(0.0, abs=1e-12)
    (seen,) = server.seen
    assert seen.authorization == f"Bearer {KEY}"
    assert (lineage["id"], lineage["backend"], lineage["prompt_version"]) == (
        judge_id,
        "openai",
        1,
    )
    assert KEY not in str(lineage)
