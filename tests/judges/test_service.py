"""Judges work the people's queue with their own users row: leases that hold no slot,
rankings marked AI that never count as annotations, skips with reasons, position checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.annotation import repository as queue
from app.annotation import service as annotation
from app.annotation.service import AlreadySubmitted
from app.config import get_settings
from app.errors import InvalidInput
from app.judges import service
from app.judges.schemas import JudgeCreate, JudgeUpdate
from app.models import (
    Comparison,
    Judge,
    JudgeTaskLog,
    Project,
    ProjectMember,
    Ranking,
    SampleFlag,
    SampleRating,
    TaskStatus,
    User,
)
from tests.annotation.conftest import make_member
from tests.factories import make_project, make_task, task_sample_ids


def _judge(session: Session, project: Project, **fields: object) -> Judge:
    data = JudgeCreate.model_validate(
        {"name": f"judge {fields.get('name', 'a')}", "backend": "simulated", "model": "sim"}
        | {k: v for k, v in fields.items() if k != "name"}
    )
    return service.create_judge(session, project_id=project.id, data=data, created_by_id=None)


def _project(session: Session, **fields: object) -> Project:
    return make_project(session, annotations_per_task=1, **fields)


def test_a_judge_is_a_model_user_who_cannot_log_in(db_session: Session) -> None:
    project = _project(db_session)
    judge = _judge(db_session, project)
    user = db_session.get(User, judge.user_id)
    assert user is not None
    assert user.kind == "model"
    assert db_session.get(ProjectMember, (project.id, user.id)) is not None
    found, reason = accounts.authenticate(
        db_session,
        username=user.username,
        password=service.UNUSABLE_PASSWORD,
        client_address="127.0.0.1",
        settings=get_settings(),
    )
    assert found is None
    assert reason == "Invalid username or password"


def test_a_judge_lease_takes_no_human_slot(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    lease = service.lease_for_judge(db_session, judge_id=judge.id)
    assert lease is not None
    assert lease.task_id == task.id
    assert sorted(i for i, _ in lease.samples) == sorted(task_sample_ids(db_session, task))
    person = make_member(db_session, project)
    following = annotation.next_task(db_session, user_id=person.id, chosen_project_id=project.id)
    assert following.task is not None
    assert following.task.id == task.id


def test_a_judgement_is_marked_ai_and_counts_no_annotation(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project, flag_harm=True)
    lease = service.lease_for_judge(db_session, judge_id=judge.id)
    assert lease is not None
    ids = [sample_id for sample_id, _ in lease.samples]
    ranking_id = service.record_judgement(
        db_session,
        judge_id=judge.id,
        task_id=task.id,
        groups=[[ids[0]], [ids[1], ids[2]]],
        harmful={ids[2]: "insults the user"},
        elapsed_ms=12,
        attempts=2,
    )
    ranking = db_session.get(Ranking, ranking_id)
    assert ranking is not None
    assert (ranking.source, ranking.judge_id, ranking.judge_prompt_version) == ("ai", judge.id, 1)
    sources = db_session.scalars(
        select(Comparison.source).where(Comparison.ranking_id == ranking_id)
    )
    assert list(sources) == ["ai"] * 3
    db_session.refresh(task)
    assert (task.annotations_done, task.status) == (0, TaskStatus.open)
    assert db_session.scalar(select(func.count()).select_from(SampleRating)) == 0
    flag = db_session.scalars(select(SampleFlag).where(SampleFlag.sample_id == ids[2])).one()
    assert (flag.kind, flag.user_id) == ("suggested_harmful", judge.user_id)
    log = db_session.scalars(select(JudgeTaskLog).where(JudgeTaskLog.judge_id == judge.id)).one()
    assert (log.outcome, log.attempts, log.elapsed_ms) == ("ranked", 2, 12)
    assert service.lease_for_judge(db_session, judge_id=judge.id) is None


def test_a_judgement_must_rank_the_task_samples(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    assert service.lease_for_judge(db_session, judge_id=judge.id) is not None
    with pytest.raises(InvalidInput):
        service.record_judgement(
            db_session,
            judge_id=judge.id,
            task_id=task.id,
            groups=[[999_999]],
            harmful={},
            elapsed_ms=1,
            attempts=1,
        )


def test_a_skipped_task_is_not_leased_again_and_its_reason_kept(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    assert service.lease_for_judge(db_session, judge_id=judge.id) is not None
    service.record_skip(
        db_session, judge_id=judge.id, task_id=task.id, reason="malformed output", attempts=3
    )
    assert service.lease_for_judge(db_session, judge_id=judge.id) is None
    (progress,) = service.judge_progress(db_session, project_id=project.id)
    assert (progress.ranked, progress.skipped, progress.remaining) == (0, 1, 0)
    assert progress.last_skip_reason == "malformed output"


def test_unreached_overlap_leaves_tasks_people_hold_or_ranked(db_session: Session) -> None:
    project = _project(db_session)
    held = make_task(db_session, project, k=3)
    ranked = make_task(db_session, project, k=3)
    free = make_task(db_session, project, k=3)
    person = make_member(db_session, project)
    lease = annotation.next_task(db_session, user_id=person.id, chosen_project_id=project.id)
    assert lease.task is not None
    assert lease.task.id == held.id
    ranked.annotations_done = 1
    db_session.flush()
    judge = _judge(db_session, project, overlap="unreached")
    lease_of_judge = service.lease_for_judge(db_session, judge_id=judge.id)
    assert lease_of_judge is not None
    assert lease_of_judge.task_id == free.id


def test_share_picks_the_same_tasks_in_sql_and_python(db_session: Session) -> None:
    project = _project(db_session)
    made = [make_task(db_session, project, k=2) for _ in range(12)]
    judge = _judge(db_session, project, share=0.5)
    expected = [t.id for t in made if queue.judge_takes(judge_id=judge.id, task_id=t.id, share=0.5)]
    leased = []
    while (lease := service.lease_for_judge(db_session, judge_id=judge.id)) is not None:
        leased.append(lease.task_id)
    assert leased == expected
    assert 0 < len(expected) < len(made)


def test_a_paused_judge_leases_nothing_until_resumed(db_session: Session) -> None:
    project = _project(db_session)
    make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    service.pause_judge(db_session, judge_id=judge.id, reason="agreement 0.41 below 0.6")
    assert service.lease_for_judge(db_session, judge_id=judge.id) is None
    (progress,) = service.judge_progress(db_session, project_id=project.id)
    assert (progress.state, progress.paused_reason) == ("paused", "agreement 0.41 below 0.6")
    service.resume_judge(db_session, judge_id=judge.id)
    assert service.lease_for_judge(db_session, judge_id=judge.id) is not None


def test_a_new_template_or_principles_bump_the_prompt_version(db_session: Session) -> None:
    project = _project(db_session)
    judge = _judge(db_session, project)
    service.update_judge(db_session, judge_id=judge.id, data=JudgeUpdate(name="renamed"))
    assert judge.prompt_version == 1
    service.update_judge(db_session, judge_id=judge.id, data=JudgeUpdate(principles=["Be honest."]))
    service.update_judge(
        db_session, judge_id=judge.id, data=JudgeUpdate(prompt_template="Rank {samples}")
    )
    assert (judge.prompt_version, judge.principles) == (3, ["Be honest."])


def test_an_update_cannot_leave_an_openai_judge_without_a_url(db_session: Session) -> None:
    project = _project(db_session)
    judge = _judge(db_session, project)
    with pytest.raises(InvalidInput):
        service.update_judge(db_session, judge_id=judge.id, data=JudgeUpdate(backend="openai"))
    with pytest.raises(InvalidInput):
        service.update_judge(db_session, judge_id=judge.id, data=JudgeUpdate(name=None))


def test_a_position_check_counts_flipped_pairs(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    assert service.lease_for_judge(db_session, judge_id=judge.id) is not None
    a, b, c = task_sample_ids(db_session, task)
    service.record_judgement(
        db_session,
        judge_id=judge.id,
        task_id=task.id,
        groups=[[a], [b], [c]],
        harmful={},
        elapsed_ms=1,
        attempts=1,
    )
    service.record_position_check(
        db_session, judge_id=judge.id, task_id=task.id, reversed_groups=[[b], [a], [c]]
    )
    log = db_session.scalars(
        select(JudgeTaskLog).where(JudgeTaskLog.outcome == "position_check")
    ).one()
    assert (log.flipped_pairs, log.total_pairs) == (1, 3)


@pytest.mark.parametrize(
    "fields",
    [
        {"backend": "openai", "model": "m"},
        {"backend": "openai", "model": "m", "base_url": "ftp://host/v1"},
        {"backend": "openai", "model": "m", "base_url": "http://h/v1", "api_key_env": "sk-abc123"},
        {"backend": "openai", "model": "m", "base_url": "http://h/v1", "api_key_env": "my key"},
        {"backend": "hf", "model": "m", "share": 0},
        {"backend": "hf", "model": "m", "position_check_share": 1.5},
        {"backend": "hf", "model": "m", "method": "vote"},
        {"backend": "openai", "model": "m", "base_url": "http://h/v1", "method": "logprob"},
    ],
)
def test_bad_judge_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JudgeCreate.model_validate({"name": "j", **fields})


def test_a_key_pasted_for_its_variable_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        JudgeCreate(
            name="j",
            backend="openai",
            model="m",
            base_url="http://h/v1",
            api_key_env="abcdefghijklmnop1234567890XYZ",
        )
    ok = JudgeCreate(
        name="j", backend="openai", model="m", base_url="http://h/v1/", api_key_env="OPENAI_KEY"
    )
    assert (ok.api_key_env, ok.base_url) == ("OPENAI_KEY", "http://h/v1")


def test_a_task_whose_lease_ran_out_is_ranked_once(db_session: Session) -> None:
    project = _project(db_session)
    task = make_task(db_session, project, k=3)
    judge = _judge(db_session, project)
    first = service.lease_for_judge(db_session, judge_id=judge.id)
    assert first is not None
    later = datetime.now(UTC) + timedelta(minutes=project.lease_minutes + 1)
    again = service.lease_for_judge(db_session, judge_id=judge.id, now=later)
    assert again is not None
    assert again.task_id == task.id
    groups = [[sample_id] for sample_id, _ in first.samples]
    args = {"judge_id": judge.id, "task_id": task.id, "groups": groups, "harmful": {}}
    service.record_judgement(db_session, **args, elapsed_ms=1, attempts=1)
    with pytest.raises(AlreadySubmitted):
        service.record_judgement(db_session, **args, elapsed_ms=1, attempts=1)
    count = select(func.count()).select_from(Ranking).where(Ranking.task_id == task.id)
    assert db_session.scalar(count) == 1
