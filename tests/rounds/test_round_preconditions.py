"""A round that cannot run is refused when it is started (service, form, API) with a 422 that
says what is missing; hyperparameters outside sane bounds are refused by the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import GatedRepoError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import (
    AnnotatorExclusion,
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Prompt,
    Ranking,
    Role,
    TrainingRound,
)
from app.rounds import preconditions, service, sizing
from app.rounds.registry import configs
from tests.factories import make_project, make_ready_project, make_user, make_version
from tests.helpers import login

ROUND_TYPES = ["reward_ppo", "sft", "dpo"]


def _refusal(session: Session, project_id: int, round_type: str, **config: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        service.start_round(
            session, project_id=project_id, round_type=round_type, config=config, enqueue=False
        )
    assert (
        session.scalars(select(TrainingRound).where(TrainingRound.project_id == project_id)).all()
        == []
    )
    return refused.value


def _fields(error: InvalidInput) -> set[str]:
    return {d["field"] for d in error.details}


@pytest.mark.parametrize(
    ("round_type", "missing"),
    [
        ("sft", {"prompts", "demonstrations"}),
        ("reward_ppo", {"prompts", "rankings"}),
        ("dpo", {"prompts", "rankings"}),
    ],
)
def test_an_empty_project_is_refused_with_everything_it_lacks(
    db_session: Session, round_type: str, missing: set[str]
) -> None:
    project = make_project(db_session)

    refused = _refusal(db_session, project.id, round_type)

    assert refused.status_code == 422
    assert _fields(refused) == missing
    assert refused.message.startswith("This round cannot run: ")
    assert "\n" not in refused.message


@pytest.mark.parametrize("round_type", ROUND_TYPES)
def test_a_project_with_what_each_type_needs_starts(db_session: Session, round_type: str) -> None:
    project = make_ready_project(db_session)
    started = service.start_round(
        db_session, project_id=project.id, round_type=round_type, enqueue=False
    )
    assert started.number == 1


def test_sft_needs_enough_demonstrations(db_session: Session) -> None:
    project = make_ready_project(db_session, demonstrations=3)

    refused = _refusal(db_session, project.id, "sft")

    assert _fields(refused) == {"demonstrations"}
    assert "has 3, at least 4 are needed" in refused.message
    # a reward model round does not need them
    service.start_round(db_session, project_id=project.id, round_type="dpo", enqueue=False)


def test_too_few_prompts_for_the_held_out_split_are_refused(db_session: Session) -> None:
    project = make_ready_project(db_session, prompts=8)
    keep = db_session.scalars(
        select(Prompt.id).where(Prompt.project_id == project.id).order_by(Prompt.id).limit(3)
    ).all()
    db_session.execute(
        update(Prompt)
        .where(Prompt.project_id == project.id, Prompt.id.not_in(keep))
        .values(active=False)
    )

    refused = _refusal(db_session, project.id, "reward_ppo")

    assert _fields(refused) == {"prompts"}
    assert "3 active prompts" in refused.message


@pytest.mark.parametrize("round_type", ["reward_ppo", "dpo"])
def test_rankings_no_reward_model_can_train_on_do_not_count(
    db_session: Session, round_type: str
) -> None:
    project = make_ready_project(db_session)
    annotator = db_session.scalars(
        select(Ranking.user_id).where(Ranking.project_id == project.id)
    ).first()
    db_session.add(AnnotatorExclusion(project_id=project.id, user_id=annotator))
    db_session.flush()

    refused = _refusal(db_session, project.id, round_type)

    assert _fields(refused) == {"rankings"}
    assert "no reward model can be trained: the project has 0 usable rankings" in (refused.message)


def test_a_current_version_with_uploaded_samples_only_cannot_be_trained(
    db_session: Session,
) -> None:
    project = make_ready_project(db_session)
    db_session.execute(
        update(PolicyVersion)
        .where(PolicyVersion.project_id == project.id)
        .values(status=PolicyStatus.retired)
    )
    make_version(db_session, project, kind=PolicyKind.external, status=PolicyStatus.current)

    for round_type in ROUND_TYPES:
        assert _fields(_refusal(db_session, project.id, round_type)) == {"policy"}


# The base model ------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: a request to it fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("the check must not reach the hub when offline")

    monkeypatch.setattr(huggingface_hub, "file_exists", no_network)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub allowed; the test stands in for it (nothing leaves this machine)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _with_base(db_session: Session, base_model: str) -> int:
    """A ready project (made on the tiny model) whose base model is then `base_model`."""
    project = make_ready_project(db_session)
    project.base_model = base_model
    db_session.execute(
        update(PolicyVersion)
        .where(PolicyVersion.project_id == project.id)
        .values(base_model=base_model)
    )
    return project.id


def _gated() -> Exception:
    """A GatedRepoError as huggingface_hub raises it (its constructor wants an HTTP reply)."""
    error = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(error, "gated")
    return error


@pytest.mark.parametrize(
    ("directory", "round_type", "reason"),
    [
        ("gone", "reward_ppo", "is not a directory on this server"),
        ("", "sft", "has no config.json"),
    ],
    ids=["missing", "without-config"],
)
def test_a_model_directory_that_is_missing_or_has_no_config_is_refused(
    db_session: Session, tmp_path: Path, offline: None, directory: str, round_type: str, reason: str
) -> None:
    project_id = _with_base(db_session, str(tmp_path / directory))

    refused = _refusal(db_session, project_id, round_type)

    assert _fields(refused) == {"base_model"}
    assert reason in refused.message


def test_a_model_directory_with_its_config_starts(
    db_session: Session, tmp_path: Path, offline: None
) -> None:
    (tmp_path / "config.json").write_text("{}")
    project_id = _with_base(db_session, str(tmp_path))

    service.start_round(db_session, project_id=project_id, round_type="sft", enqueue=False)


def test_a_hub_model_not_in_the_cache_is_refused_offline_without_a_request(
    db_session: Session, offline: None
) -> None:
    project_id = _with_base(db_session, "rankloop-tests/no-such-model")

    refused = _refusal(db_session, project_id, "dpo")

    assert _fields(refused) == {"base_model"}
    assert "not in this server's Hugging Face cache and the hub is offline" in refused.message


def test_a_cached_hub_model_starts_offline(
    db_session: Session, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        huggingface_hub, "try_to_load_from_cache", lambda repo, name: f"/cache/{repo}/{name}"
    )
    project_id = _with_base(db_session, "rankloop-tests/cached-model")

    service.start_round(db_session, project_id=project_id, round_type="dpo", enqueue=False)


@pytest.mark.parametrize(
    ("answer", "refused_with"),
    [
        (False, "was not found on the Hugging Face hub"),
        (_gated(), "is gated"),
        (ConnectionError("no route to the hub"), None),  # cannot tell: the worker will say
        (True, None),
    ],
    ids=["missing", "gated", "unreachable", "exists"],
)
def test_a_hub_model_is_looked_up_online(
    db_session: Session,
    online: None,
    monkeypatch: pytest.MonkeyPatch,
    answer: Any,
    refused_with: str | None,
) -> None:
    def file_exists(repo_id: str, filename: str, **kwargs: Any) -> bool:
        assert (repo_id, filename) == ("rankloop-tests/some-model", "config.json")
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(huggingface_hub, "file_exists", file_exists)
    project_id = _with_base(db_session, "rankloop-tests/some-model")

    if refused_with is None:
        service.start_round(db_session, project_id=project_id, round_type="dpo", enqueue=False)
    else:
        assert refused_with in _refusal(db_session, project_id, "dpo").message


def test_a_reward_model_base_that_cannot_be_loaded_is_refused(
    db_session: Session, tmp_path: Path, offline: None
) -> None:
    project = make_ready_project(db_session)

    refused = _refusal(
        db_session, project.id, "reward_ppo", reward_model={"base_model": str(tmp_path / "no")}
    )

    assert _fields(refused) == {"reward_model.base_model"}


@pytest.mark.parametrize(
    "name", ["tiny", "rankloop-no-such-model", "rankloop-tests/model-1.5", "./models/x"]
)
def test_names_are_read_as_the_workers_read_them(name: str, offline: None) -> None:
    why = preconditions.base_model_problem(name)
    if name == "tiny":
        assert why is None  # the workers build it
    elif name.startswith("."):
        assert why is not None
        assert "not a directory" in why
    else:
        assert why is not None
        assert "Hugging Face cache" in why


def test_a_name_that_is_neither_path_nor_hub_id_is_refused(offline: None) -> None:
    why = preconditions.base_model_problem("not a model name!")
    assert why is not None
    assert "neither a directory" in why


# Through the form and the API ----------------------------------------------------------------


def test_the_form_shows_what_is_missing_and_starts_nothing(
    client: httpx.Client, db_session: Session
) -> None:
    make_user(db_session, role=Role.admin, username="precondition-admin")
    token = login(client, "precondition-admin")
    project = make_project(db_session)

    response = client.post(
        f"/admin/projects/{project.id}/rounds", data={"type": "sft", "csrf_token": token}
    )

    assert response.status_code == 422
    assert "This round cannot run" in response.text
    assert "<code>demonstrations</code>" in response.text
    assert db_session.scalars(select(TrainingRound)).all() == []


def test_the_api_answers_422_with_each_missing_thing(
    client: httpx.Client,
    db_session: Session,
    writer: dict[str, str],
    sent_stages: list[tuple[int, str]],
) -> None:
    project = make_project(db_session)
    db_session.commit()

    response = client.post(
        f"/api/v1/projects/{project.id}/rounds", json={"type": "reward_ppo"}, headers=writer
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"].startswith("This round cannot run")
    assert {d["field"] for d in error["details"]} == {"prompts", "rankings"}
    assert sent_stages == []


# Hyperparameter bounds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("round_type", "config", "field"),
    [
        ("reward_ppo", {"reward_model": {"learning_rate": 1e-45}}, "reward_model.learning_rate"),
        ("reward_ppo", {"ppo": {"learning_rate": 1e-45}}, "ppo.learning_rate"),
        ("sft", {"learning_rate": 1e-45}, "learning_rate"),
        ("dpo", {"learning_rate": 1e-45}, "learning_rate"),
        ("dpo", {"learning_rate": 2.0}, "learning_rate"),
        ("reward_ppo", {"max_kl": 1e237}, "max_kl"),
        ("reward_ppo", {"max_kl": 1e-45}, "max_kl"),
        ("reward_ppo", {"ppo": {"kl_coef": 1e237}}, "ppo.kl_coef"),
        ("reward_ppo", {"ppo": {"kl_coef": -1}}, "ppo.kl_coef"),
        ("reward_ppo", {"ppo": {"temperature": 1e-45}}, "ppo.temperature"),
        ("reward_ppo", {"ppo": {"steps": 10**9}}, "ppo.steps"),
        ("reward_ppo", {"reward_model": {"epochs": 10**9}}, "reward_model.epochs"),
        ("reward_ppo", {"reward_model": {"heldout_fraction": 1e-45}}, "heldout_fraction"),
        ("reward_ppo", {"reward_model": {"base_model": "x" * 501}}, "reward_model.base_model"),
        ("reward_ppo", {"min_score_gain": 1e237}, "min_score_gain"),
        ("sft", {"epochs": 10**9}, "epochs"),
        ("sft", {"heldout_fraction": 0.99}, "heldout_fraction"),
        ("dpo", {"beta": 1e-45}, "beta"),
        ("dpo", {"beta": 1e237}, "beta"),
        ("dpo", {"epochs": 0}, "epochs"),
        ("dpo", {"max_kl": float("inf")}, "max_kl"),
    ],
)  # fmt: skip
def test_hyperparameters_outside_sane_bounds_are_refused(
    round_type: str, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.parse_config(round_type, config)
    assert any(f == field or f.endswith(f".{field}") for f in _fields(refused.value))


def test_the_defaults_are_within_the_bounds_and_unchanged() -> None:
    """Bounds must not move a default (they were chosen by benchmark)."""
    for round_type, model in configs().items():
        assert service.parse_config(round_type, {}) == model().model_dump()
    dpo, sft, ppo = (service.parse_config(t, {}) for t in ("dpo", "sft", "reward_ppo"))
    assert (dpo["learning_rate"], dpo["beta"], dpo["heldout_fraction"]) == (6e-4, 0.1, 0.2)
    assert (sft["learning_rate"], sft["heldout_fraction"], sft["epochs"]) == (3e-4, 0.1, 3)
    assert (ppo["max_kl"], ppo["ppo"]["kl_coef"], ppo["ppo"]["learning_rate"]) == (25.0, 0.05, 3e-4)
    assert (ppo["reward_model"]["learning_rate"], ppo["reward_model"]["max_length"]) == (1e-3, 256)


@pytest.mark.parametrize("round_type", ROUND_TYPES)
@pytest.mark.parametrize(
    ("temperature", "max_new_tokens", "prompts", "rankings"),
    [(0.01, 1, 0, 0), (5.0, 8192, 4, 1), (1.0, 256, 10**6, 10**6), (0.7, 64, 30, 3)],
)
def test_sized_values_are_within_the_bounds(
    db_session: Session,
    round_type: str,
    temperature: float,
    max_new_tokens: int,
    prompts: int,
    rankings: int,
) -> None:
    """Any project's settings (their own bounds: temperature 0.01-5, 1-8192 new tokens) and
    counts size a round the schema accepts."""
    project = make_project(db_session, temperature=temperature, max_new_tokens=max_new_tokens)
    clean = service.parse_config(round_type, {})
    sized = sizing.size_round(
        project, round_type=round_type, config=clean, prompts=prompts, rankings=rankings
    )
    filled = sizing.apply_sizing(clean, sized)
    assert service.parse_config(round_type, filled) == filled
