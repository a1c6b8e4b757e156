"""Round rules: validated configs, one active round per project, cancel, the reaper."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, InvalidInput
from app.models import (
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Project,
    Prompt,
    RoundState,
    Sample,
    TrainingRound,
)
from app.rounds import lineage, service
from tests.conftest import FreshDatabase
from tests.factories import (
    make_project,
    make_ready_project,
    make_task,
    make_version,
    start_ready_round,
)


def test_start_round_fills_defaults_and_records_the_base_version(db_session: Session) -> None:
    project = make_ready_project(db_session)
    training_round = service.start_round(
        db_session,
        project_id=project.id,
        round_type="reward_ppo",
        config={"ppo": {"steps": 3}},
        enqueue=False,
    )
    assert training_round.number == 1
    assert training_round.state == RoundState.queued
    assert training_round.config["ppo"]["steps"] == 3
    assert training_round.config["ppo"]["kl_coef"] == 0.05
    assert training_round.base_policy_version_id is not None


@pytest.mark.parametrize(
    ("round_type", "config", "field"),
    [
        ("magic", {}, "type"),
        ("reward_ppo", {"ppo": {"steps": 0}}, "ppo.steps"),
        ("reward_ppo", {"surprise": 1}, "surprise"),
        ("dpo", {"beta": -1}, "beta"),
        ("reward_ppo", {"min_score_gain": "nan"}, "min_score_gain"),
        ("reward_ppo", {"max_kl": "inf"}, "max_kl"),
        ("reward_ppo", {"ppo": {"batch_size": 4, "mini_batch_size": 3}}, "ppo"),
        ("dpo", {"seed": 2**63}, "seed"),
    ],
)
def test_bad_round_config_is_refused_with_the_field(
    db_session: Session, round_type: str, config: dict, field: str
) -> None:
    project = make_ready_project(db_session)
    with pytest.raises(InvalidInput) as error:
        service.start_round(
            db_session,
            project_id=project.id,
            round_type=round_type,
            config=config,
            enqueue=False,
        )
    assert any(d["field"] == field for d in error.value.details)
    assert service.repository.active_round(db_session, project.id) is None


def test_only_one_active_round_per_project(db_session: Session) -> None:
    project = make_ready_project(db_session)
    service.start_round(db_session, project_id=project.id, round_type="dpo", enqueue=False)
    with pytest.raises(Conflict, match="still queued"):
        service.start_round(db_session, project_id=project.id, round_type="sft", enqueue=False)


def test_cancelling_a_queued_round_ends_it_at_once(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "dpo")
    service.cancel_round(db_session, round_id=training_round.id)
    assert training_round.state == RoundState.cancelled
    with pytest.raises(Conflict):
        service.cancel_round(db_session, round_id=training_round.id)
    assert service.begin_stage(db_session, training_round.id, "policy") is None


def test_cancel_of_a_running_round_is_seen_by_the_stage(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "dpo")
    assert service.begin_stage(db_session, training_round.id, "policy") is not None
    assert not service.record_progress(db_session, training_round.id, step=1, total=4)
    service.cancel_round(db_session, round_id=training_round.id)
    assert training_round.state == RoundState.policy  # still running until it checks
    assert service.record_progress(db_session, training_round.id, step=2, total=4)
    assert service.complete_stage(db_session, training_round.id, "policy") is None
    assert training_round.state == RoundState.cancelled


def test_a_round_that_registered_its_version_can_no_longer_be_cancelled(
    db_session: Session,
) -> None:
    project, training_round = start_ready_round(db_session, "dpo")
    assert service.begin_stage(db_session, training_round.id, "policy") is not None
    assert service.complete_stage(db_session, training_round.id, "policy") == "evaluating"
    assert service.begin_stage(db_session, training_round.id, "evaluating") is not None
    assert service.claim_registration(db_session, training_round.id) is training_round
    make_version(db_session, project, round_id=training_round.id)
    assert service.complete_stage(db_session, training_round.id, "evaluating") == "sampling"
    assert service.begin_stage(db_session, training_round.id, "sampling") is not None
    with pytest.raises(Conflict, match="already registered policy version 2"):
        service.cancel_round(db_session, round_id=training_round.id)
    assert training_round.cancel_requested is False
    assert training_round.state == RoundState.sampling


def test_a_cancel_that_came_first_stops_the_registration(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "dpo")
    service.begin_stage(db_session, training_round.id, "policy")
    service.complete_stage(db_session, training_round.id, "policy")
    service.begin_stage(db_session, training_round.id, "evaluating")
    service.cancel_round(db_session, round_id=training_round.id)
    assert service.claim_registration(db_session, training_round.id) is None


def test_progress_keeps_series_for_charts_and_an_eta(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "dpo")
    service.begin_stage(db_session, training_round.id, "policy")
    for step in (1, 2):
        service.record_progress(
            db_session,
            training_round.id,
            step=step,
            total=4,
            metrics={"loss": 1.0 / step, "kl": float("nan")},
            series="policy",
        )
    assert [p["step"] for p in training_round.metrics["policy"]] == [1, 2]
    assert training_round.metrics["policy"][1]["kl"] is None  # NaN is stored as null
    assert training_round.progress["eta_seconds"] >= 0
    assert training_round.progress["metrics"]["loss"] == 0.5


def test_stages_advance_in_order_and_a_duplicate_delivery_is_ignored(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "reward_ppo")
    assert service.begin_stage(db_session, training_round.id, "reward_model") is not None
    assert service.complete_stage(db_session, training_round.id, "reward_model") == "policy"
    assert service.begin_stage(db_session, training_round.id, "policy") is not None
    assert service.begin_stage(db_session, training_round.id, "reward_model") is None
    assert service.complete_stage(db_session, training_round.id, "policy") == "evaluating"
    service.begin_stage(db_session, training_round.id, "evaluating")
    assert service.complete_stage(db_session, training_round.id, "evaluating") == "sampling"
    service.begin_stage(db_session, training_round.id, "sampling")
    assert service.complete_stage(db_session, training_round.id, "sampling") is None
    assert training_round.state == RoundState.done


def test_reaper_fails_rounds_with_a_stale_heartbeat(db_session: Session) -> None:
    _, training_round = start_ready_round(db_session, "dpo")
    service.begin_stage(db_session, training_round.id, "policy")
    assert service.reap_stale_rounds(db_session, timeout_seconds=600) == []
    training_round.heartbeat_at = utcnow() - timedelta(minutes=11)
    db_session.flush()
    assert service.reap_stale_rounds(db_session, timeout_seconds=600) == [training_round.id]
    assert training_round.state == RoundState.failed
    assert training_round.error == (
        "The worker stopped responding during DPO training (no heartbeat for more than 600 s); "
        "start the round again."
    )


def test_the_reaper_says_when_the_round_had_registered_its_version(db_session: Session) -> None:
    project, training_round = start_ready_round(db_session, "sft")
    service.begin_stage(db_session, training_round.id, "policy")
    make_version(db_session, project, round_id=training_round.id, status=PolicyStatus.rejected)
    training_round.heartbeat_at = utcnow() - timedelta(minutes=11)
    db_session.flush()

    assert service.reap_stale_rounds(db_session, timeout_seconds=600) == [training_round.id]

    assert "after policy version 2 was registered (rejected)" in (training_round.error or "")
    assert "start the round again" not in (training_round.error or "")


def _make_current(db_session: Session, project: Project, **fields: object) -> PolicyVersion:
    for old in db_session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project.id, PolicyVersion.status == PolicyStatus.current
        )
    ):
        old.status = PolicyStatus.retired
    db_session.flush()
    return make_version(
        db_session, project, kind=PolicyKind.trained, status=PolicyStatus.current, **fields
    )


def test_a_start_round_after_a_previous_round_is_refused_before_anything_runs(
    db_session: Session,
) -> None:
    project = make_ready_project(db_session)
    # Version 2 was trained with reference 'previous': its chain merges an earlier adapter.
    _make_current(
        db_session,
        project,
        artifact_uri="mem://v2",
        metrics={"merged_adapters": ["mem://v1-adapter"]},
    )
    with pytest.raises(InvalidInput, match="reference 'previous'"):
        service.start_round(
            db_session,
            project_id=project.id,
            round_type="reward_ppo",
            config={"reference": "start"},
            enqueue=False,
        )
    started = service.start_round(
        db_session, project_id=project.id, round_type="reward_ppo", enqueue=False
    )
    assert started.config["reference"] == "previous"  # the default


def test_rewards_are_normalised_on_the_reference_policys_samples(db_session: Session) -> None:
    project = make_project(db_session)
    make_task(db_session, project, texts=["v1 a", "v1 b", "v1 c", "v1 d"])
    current = _make_current(db_session, project, artifact_uri="mem://v2")
    prompt = db_session.scalars(select(Prompt).where(Prompt.project_id == project.id)).first()
    assert prompt is not None
    for ordinal, text in enumerate(["v2 a", "v2 b"]):
        db_session.add(
            Sample(
                project_id=project.id,
                prompt_id=prompt.id,
                policy_version_id=current.id,
                text=text,
                ordinal=ordinal,
            )
        )
    db_session.flush()

    _, start = lineage.reference_samples(db_session, project_id=project.id, reference="start")
    _, previous = lineage.reference_samples(db_session, project_id=project.id, reference="previous")
    assert sorted(start) == ["v1 a", "v1 b", "v1 c", "v1 d"]  # no SFT version: version 1
    assert sorted(previous) == ["v2 a", "v2 b"]  # the current version is the reference


def test_a_cancel_during_begin_stage_is_not_overwritten(app_database: FreshDatabase) -> None:
    """The worker enters a stage while the admin cancels: the cancel waits for the stage's
    transaction, then marks the running round, which the stage sees at its next step. (Read
    without a lock, the stage's write put a cancelled round back to running.)"""
    with app_database.session() as session:
        _, training_round = start_ready_round(session, "dpo")
        session.commit()
        round_id = training_round.id
    worker = app_database.session()
    assert service.begin_stage(worker, round_id, "policy") is not None  # not committed yet

    def admin_cancels() -> None:
        with app_database.session() as admin:
            service.cancel_round(admin, round_id=round_id)
            admin.commit()

    admin = threading.Thread(target=admin_cancels)
    admin.start()
    admin.join(timeout=0.5)  # blocked behind the stage's transaction (or already done)
    worker.commit()
    worker.close()
    admin.join(timeout=30)
    assert not admin.is_alive()

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert (ended.state, ended.cancel_requested, ended.finished_at) == (
            RoundState.policy,
            True,
            None,
        )
        assert service.complete_stage(session, round_id, "policy") is None
        assert ended.state == RoundState.cancelled
