"""Round defaults sized from the project: blank settings get values (and reasons) from its
sampling settings, prompts and rankings; explicit values win; seeds are fresh per round."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.rounds import service
from app.rounds.service import parse_config
from app.rounds.sizing import size_round
from app.seeds import derived_seed
from tests.factories import make_project, make_ready_project


def _sized(project: object, *, prompts: int, rankings: int, config: dict | None = None) -> dict:
    clean = parse_config("reward_ppo", config or {})
    return {
        name: item.value
        for name, item in size_round(
            project,  # type: ignore[arg-type]
            round_type="reward_ppo",
            config=clean,
            prompts=prompts,
            rankings=rankings,
        ).items()
    }


def test_rollouts_follow_the_projects_sampling_settings(db_session: Session) -> None:
    project = make_project(db_session, temperature=0.7, max_new_tokens=48)

    sized = _sized(project, prompts=100, rankings=100)

    assert sized["ppo.temperature"] == 0.7
    assert sized["ppo.max_new_tokens"] == 48


def test_ppo_budget_grows_with_prompts_and_is_held_back_by_few_rankings(
    db_session: Session,
) -> None:
    project = make_project(db_session)

    small = _sized(project, prompts=100, rankings=100)["ppo.steps"]
    large = _sized(project, prompts=400, rankings=400)["ppo.steps"]
    few_rankings = _sized(project, prompts=400, rankings=100)["ppo.steps"]

    assert small < large
    assert few_rankings < large
    assert 16 * large <= 2048  # the cap on episodes


def test_gate_samples_give_about_two_hundred_per_version(db_session: Session) -> None:
    project = make_project(db_session)

    sized = _sized(project, prompts=192, rankings=150)

    assert sized["eval_prompts"] == 48
    assert sized["eval_prompts"] * sized["gate_samples"] >= 200


def test_explicit_settings_are_not_resized(db_session: Session) -> None:
    project = make_project(db_session)

    sized = _sized(
        project,
        prompts=192,
        rankings=150,
        config={"eval_prompts": 10, "gate_samples": 3, "ppo": {"steps": 5, "temperature": 1.0}},
    )

    assert not {"eval_prompts", "gate_samples", "ppo.steps", "ppo.temperature"} & set(sized)


def test_a_round_started_again_after_a_rejection_gets_a_new_seed(db_session: Session) -> None:
    project = make_ready_project(db_session, prompts=40, temperature=0.8)
    first = service.start_round(
        db_session, project_id=project.id, round_type="reward_ppo", enqueue=False
    )
    service.reject_round(db_session, first.id, "the gate said no")
    second = service.start_round(
        db_session, project_id=project.id, round_type="reward_ppo", enqueue=False
    )

    assert first.config["seed"] == derived_seed("round", first.id)
    assert second.config["seed"] == derived_seed("round", second.id)
    assert first.config["seed"] != second.config["seed"]
    # The sized values are stored in the config, their reasons in the metrics.
    assert second.config["ppo"]["temperature"] == 0.8
    assert second.config["eval_prompts"] == 10
    assert "seed" in second.metrics["sizing"]
    assert "temperature" in second.metrics["sizing"]["ppo.temperature"]


def test_an_explicit_seed_is_kept(db_session: Session) -> None:
    project = make_ready_project(db_session, prompts=8)

    started = service.start_round(
        db_session, project_id=project.id, round_type="dpo", config={"seed": 7}, enqueue=False
    )

    assert started.config["seed"] == 7
    assert "seed" not in started.metrics["sizing"]
