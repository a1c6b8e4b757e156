"""The study planner on a real database: the reward models' points and the version pair it
plans for, the project page's section and GET /api/v1/projects/{id}/plan."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import PolicyVersion, Project, RewardModelVersion, Role, User
from app.projects import planner_service
from app.projects.planner_api import PLAN_EXAMPLE, StudyPlanOut
from app.rounds.snapshots import create_snapshot
from app.tokens import service as tokens
from tests.admin.conftest import LoggedIn, admin
from tests.factories import (
    make_current_version,
    make_project,
    make_prompt,
    make_ranking,
    make_samples,
    make_user,
    task_of,
)

__all__ = ["admin"]


def rank(
    session: Session,
    project: Project,
    user: User,
    old: PolicyVersion,
    new: PolicyVersion,
    n: int,
    pattern: str = "ONNN",
) -> None:
    """`n` rankings of two samples of each version, whose first sample is the new version's
    ("N") or the old one's ("O") as `pattern`, repeated, says."""
    for i in range(n):
        prompt = make_prompt(session, project)
        olds = make_samples(session, prompt, old, ["old a", "old b"])
        news = make_samples(session, prompt, new, ["new a", "new b"])
        task = task_of(session, project, prompt, olds + news)
        first, second = (news, olds) if pattern[i % len(pattern)] == "N" else (olds, news)
        make_ranking(session, task, user, [[first[0].id], [second[0].id], [first[1].id],
                                           [second[1].id]])  # fmt: skip


def reward_model(session: Session, project: Project, number: int, accuracy: float) -> None:
    """A reward model trained on a snapshot of the rankings so far, with a ±0.02 interval."""
    snapshot = create_snapshot(session, project_id=project.id, name=f"rm {number}")
    session.add(
        RewardModelVersion(
            project_id=project.id,
            number=number,
            snapshot_id=snapshot.id,
            base_model="tiny",
            artifact_uri=f"file:///rm/{number}",
            metrics={
                "heldout_accuracy": accuracy,
                "heldout_accuracy_low": accuracy - 0.02,
                "heldout_accuracy_high": accuracy + 0.02,
                "n_heldout": 20,
            },
        )
    )
    session.flush()


@pytest.fixture
def studied(db_session: Session) -> Project:
    """Three reward models after 8, 16 and 32 rankings (accuracy 0.86 − 1.1/√n), then 4 more
    rankings; v2 (current) against its parent v1 throughout. Committed."""
    project = make_project(db_session, samples_per_prompt=4)
    old, new = make_current_version(db_session, project)
    user = make_user(db_session)
    for number, (batch, accuracy) in enumerate([(8, 0.471), (8, 0.585), (16, 0.666)], 1):
        rank(db_session, project, user, old, new, batch)
        reward_model(db_session, project, number, accuracy)
    rank(db_session, project, user, old, new, 4)
    db_session.commit()
    return project


def test_the_plan_reads_each_reward_model_at_its_snapshots_rankings(
    db_session: Session, studied: Project
) -> None:
    plan = planner_service.study_plan(db_session, project_id=studied.id)
    assert [(p.number, p.rankings) for p in plan.reward_models] == [(1, 8), (2, 16), (3, 32)]
    assert plan.rankings == 36
    assert plan.accuracy.basis == (8, 16, 32)
    assert plan.accuracy.now == 36
    assert plan.accuracy.reason is None
    assert plan.accuracy.estimate is not None
    assert plan.accuracy.target == pytest.approx(0.84, abs=0.05)


def test_a_target_of_the_admins_is_planned_for(db_session: Session, studied: Project) -> None:
    near = planner_service.study_plan(db_session, project_id=studied.id, target=0.7)
    far = planner_service.study_plan(db_session, project_id=studied.id, target=0.75)
    assert near.accuracy.target == 0.7
    assert near.accuracy.estimate is not None
    assert far.accuracy.estimate is not None
    assert near.accuracy.estimate < far.accuracy.estimate


def test_the_verdict_is_planned_for_the_current_version_against_its_parent(
    db_session: Session, studied: Project
) -> None:
    plan = planner_service.study_plan(db_session, project_id=studied.id)
    assert (plan.new_version, plan.old_version) == (2, 1)
    verdict = plan.verdict
    assert verdict.reason is None
    assert verdict.difference is not None
    assert verdict.difference > 0  # the new version is ranked first three times in four
    assert list(verdict.basis) == sorted(set(verdict.basis))
    assert len(verdict.basis) == 4
    assert verdict.basis[-1] == verdict.now == 36
    assert verdict.estimate is not None


def test_an_undecided_verdict_gets_an_estimate_and_a_range(
    db_session: Session, client: httpx.Client, admin: LoggedIn
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    old, new = make_current_version(db_session, project)
    rank(db_session, project, make_user(db_session), old, new, 24, pattern="NNOON")
    db_session.commit()
    verdict = planner_service.study_plan(db_session, project_id=project.id).verdict
    assert verdict.estimate is not None
    assert verdict.estimate > 0, verdict
    assert verdict.low is not None
    assert verdict.low <= verdict.estimate
    assert verdict.high is None or verdict.high >= verdict.estimate
    page = client.get(f"/admin/projects/{project.id}")
    assert f"About {verdict.estimate:,} more rankings" in page.text
    assert "until the leaderboard can tell v2 from v1" in page.text


def test_a_clear_verdict_on_few_rankings_waits_for_the_leaderboards_minimum(
    db_session: Session,
) -> None:
    """Six unanimous rankings exclude 0 from every bootstrap round, yet the leaderboard decides
    from 10 rankings of each version on (MIN_RANKINGS_FOR_VERDICT)."""
    project = make_project(db_session, samples_per_prompt=4)
    old, new = make_current_version(db_session, project)
    rank(db_session, project, make_user(db_session), old, new, 6, pattern="N")
    verdict = planner_service.study_plan(db_session, project_id=project.id).verdict
    assert (verdict.estimate, verdict.low, verdict.high) == (4, 4, 4)


def test_a_new_project_gets_reasons_instead_of_estimates(db_session: Session) -> None:
    project = make_project(db_session)
    plan = planner_service.study_plan(db_session, project_id=project.id)
    assert plan.accuracy.estimate is None
    assert plan.accuracy.reason == "No reward model has been trained yet."
    assert plan.verdict.estimate is None
    assert plan.verdict.reason == "No two policy versions have been compared yet."


def test_one_reward_model_asks_for_more(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    old, new = make_current_version(db_session, project)
    rank(db_session, project, make_user(db_session), old, new, 8)
    reward_model(db_session, project, 1, 0.6)
    plan = planner_service.study_plan(db_session, project_id=project.id)
    assert plan.accuracy.reason is not None
    assert plan.accuracy.reason.startswith("More reward models are needed")


# The project page


def test_the_project_page_shows_the_study_planner(
    client: httpx.Client, admin: LoggedIn, studied: Project
) -> None:
    page = client.get(f"/admin/projects/{studied.id}")
    assert page.status_code == 200
    section = page.text[page.text.index('id="study-planner"') :]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section))
    accuracy = (
        r"About [\d,]+ more rankings? \([\d,]+(–[\d,]+| or more)?\) to reach \d+% held-out "
        r"accuracy \(from 3 reward models: 8, 16, 32 rankings"
    )
    assert re.search(accuracy, text), text
    verdict = r"(until the leaderboard can tell|The leaderboard already tells) v2 from v1"
    assert re.search(verdict, text), text


def test_a_new_projects_page_says_why_there_is_no_plan(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = make_project(db_session)
    db_session.commit()
    page = client.get(f"/admin/projects/{project.id}")
    assert 'id="study-planner"' in page.text
    assert "No reward model has been trained yet." in page.text


# The API


@pytest.fixture
def reader(db_session: Session) -> dict[str, str]:
    issued = tokens.create_token(
        db_session,
        name="planner",
        scopes=["read"],
        created_by_id=make_user(db_session, role=Role.admin).id,
    )
    db_session.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


def test_the_api_returns_the_plan(
    client: httpx.Client, reader: dict[str, str], studied: Project
) -> None:
    response = client.get(f"/api/v1/projects/{studied.id}/plan", headers=reader)
    assert response.status_code == 200
    body = response.json()
    assert body["accuracy"]["basis"] == [8, 16, 32]
    assert [m["rankings"] for m in body["reward_models"]] == [8, 16, 32]
    assert (body["new_version"], body["old_version"]) == (2, 1)
    assert body["verdict"]["goal"] == "verdict"
    aimed = client.get(f"/api/v1/projects/{studied.id}/plan?target=0.7", headers=reader)
    assert aimed.json()["accuracy"]["target"] == 0.7


@pytest.mark.parametrize("target", ["0", "1.5", "-0.2", "high"])
def test_the_api_refuses_a_target_outside_0_to_1(
    client: httpx.Client, reader: dict[str, str], studied: Project, target: str
) -> None:
    response = client.get(f"/api/v1/projects/{studied.id}/plan?target={target}", headers=reader)
    assert response.status_code == 422
    assert response.json()["error"]["code"]


def test_the_api_needs_a_token_and_a_project(
    client: httpx.Client, reader: dict[str, str], studied: Project
) -> None:
    assert client.get(f"/api/v1/projects/{studied.id}/plan").status_code == 401
    assert client.get("/api/v1/projects/999999/plan", headers=reader).status_code == 404


def test_the_documented_example_is_a_valid_plan() -> None:
    assert StudyPlanOut.model_validate(PLAN_EXAMPLE).accuracy.basis == [300, 600, 1200]
