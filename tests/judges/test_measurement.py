"""A judge measured against people: agreement with their consensus, position flips, gold;
paused below its floor; and judges kept out of every human figure unless an admin counts
them in (leaderboard, agreement report, annotator table, reliability)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from app.db import session_scope
from app.gold import service as gold
from app.judges import service as judges
from app.judges.measurement import (
    bootstrap_mean_interval,
    judge_measures,
    measures_for_project,
    wilson_interval,
)
from app.judges.pausing import enforce_agreement_floor
from app.models import Judge, JudgeTaskLog, PolicyVersion, Project, RankingTask, User
from app.ratings import annotators, service
from app.ratings.position import position_report
from tests.admin.conftest import LoggedIn, admin, cheap_password_hashing  # noqa: F401
from tests.api.conftest import bearer, make_token  # noqa: F401
from tests.conftest import FreshDatabase
from tests.factories import (
    make_judge,
    make_judge_ranking,
    make_project,
    make_ranking,
    make_user,
)
from tests.ratings import conftest as seeding
from worker.jobs.ratings import recompute_if_dirty


def _judge_ranks(
    session: Session, judge: Judge, task: RankingTask, groups: list[list[int]]
) -> None:
    """A stored judge ranking as record_judgement writes one: marked AI, with its pairs."""
    shown = [s for group in groups for s in group][::-1]  # the worst card first
    make_judge_ranking(session, judge, task, groups, display_order=shown)


@dataclasses.dataclass
class World:
    project: Project
    base: PolicyVersion
    new: PolicyVersion
    people: list[User]
    tasks: list[tuple[RankingTask, list[int]]]
    """(task, its samples in the people's order, best first)."""


def _world(session: Session, *, tasks: int = 4, people: int = 2) -> World:
    """People who agree: each task's four samples ranked strictly, the new version's first."""
    project = make_project(session, annotations_per_task=people + 1)
    base, new = seeding.two_versions(session, project)
    users = [make_user(session) for _ in range(people)]
    seeding.add_members(session, project, *users)
    made = []
    for _ in range(tasks):
        task, samples = seeding.mixed_task(session, project, [base, new])
        order = samples[new.id] + samples[base.id]
        for user in users:
            make_ranking(session, task, user, [[s] for s in order])
        made.append((task, order))
    return World(project, base, new, users, made)


def _strict(order: list[int]) -> list[list[int]]:
    return [[s] for s in order]


# Agreement with people


def test_a_judge_agreeing_on_three_tasks_of_four_gives_the_expected_agreement_and_tau(
    db_session: Session,
) -> None:
    world = _world(db_session)
    judge = make_judge(db_session, world.project.id)
    for i, (task, order) in enumerate(world.tasks):
        _judge_ranks(db_session, judge, task, _strict(order if i < 3 else order[::-1]))

    m = judge_measures(db_session, judge_id=judge.id)

    assert (m.n_tasks, m.n_pairs) == (4, 24)
    assert m.agreement.value == pytest.approx(18 / 24)
    assert m.agreement.low is not None
    assert m.agreement.high is not None
    assert m.agreement.low < 0.75 < m.agreement.high
    assert m.kendall_tau.value == pytest.approx((1 + 1 + 1 - 1) / 4)
    assert m.kendall_tau.n == 4
    assert m.kendall_tau.low is not None
    assert -1.0 <= m.kendall_tau.low < 0.0  # resamples with the reversed task 3 or 4 times
    assert m.kendall_tau.high == pytest.approx(1.0)
    assert m.position_checks == 0
    assert m.flip_rate.value is None


def test_the_consensus_is_of_people_only_and_a_single_person_counts(db_session: Session) -> None:
    world = _world(db_session, tasks=1, people=1)
    task, order = world.tasks[0]
    judge = make_judge(db_session, world.project.id, name="agrees")
    other = make_judge(db_session, world.project.id, name="contrary")
    _judge_ranks(db_session, judge, task, _strict(order))
    _judge_ranks(db_session, other, task, _strict(order[::-1]))

    assert judge_measures(db_session, judge_id=judge.id).agreement.value == 1.0
    assert judge_measures(db_session, judge_id=other.id).agreement.value == 0.0


def test_the_consensus_of_people_who_disagree_follows_the_majority(db_session: Session) -> None:
    world = _world(db_session, tasks=1, people=2)
    task, order = world.tasks[0]
    dissenter = make_user(db_session)
    make_ranking(db_session, task, dissenter, _strict(order[::-1]))
    judge = make_judge(db_session, world.project.id)
    _judge_ranks(db_session, judge, task, _strict(order))

    m = judge_measures(db_session, judge_id=judge.id)

    assert (m.agreement.value, m.n_pairs, m.kendall_tau.value) == (1.0, 6, pytest.approx(1.0))


def test_a_judge_with_no_shared_task_has_no_figures(db_session: Session) -> None:
    world = _world(db_session, tasks=1)
    judge = make_judge(db_session, world.project.id)

    m = judge_measures(db_session, judge_id=judge.id)

    assert (m.n_tasks, m.n_pairs, m.agreement.value, m.kendall_tau.value) == (0, 0, None, None)
    assert measures_for_project(db_session, world.project.id) == {judge.id: m}


def test_position_checks_give_the_flip_rate(db_session: Session) -> None:
    world = _world(db_session, tasks=2)
    judge = make_judge(db_session, world.project.id)
    for (task, _), flipped in zip(world.tasks, (1, 2), strict=True):
        db_session.add(
            JudgeTaskLog(
                judge_id=judge.id,
                task_id=task.id,
                outcome="position_check",
                flipped_pairs=flipped,
                total_pairs=6,
            )
        )
    db_session.add(JudgeTaskLog(judge_id=judge.id, task_id=task.id, outcome="ranked"))
    db_session.flush()

    m = judge_measures(db_session, judge_id=judge.id)

    assert m.position_checks == 2
    assert (m.flip_rate.value, m.flip_rate.n) == (pytest.approx(3 / 12), 12)
    assert m.flip_rate.low is not None
    assert m.flip_rate.high is not None
    assert 0 < m.flip_rate.low < 0.25 < m.flip_rate.high < 1


def test_gold_agreement_scores_the_judges_gold_pairs(db_session: Session) -> None:
    world = _world(db_session, tasks=2)
    judge = make_judge(db_session, world.project.id)
    (right, right_order), (wrong, wrong_order) = world.tasks
    _judge_ranks(db_session, judge, right, _strict(right_order))
    _judge_ranks(db_session, judge, wrong, _strict(wrong_order[::-1]))
    gold.mark_gold(
        db_session, project_id=world.project.id, task_id=right.id, groups=[[s] for s in right_order]
    )
    gold.mark_gold(
        db_session, project_id=world.project.id, task_id=wrong.id, groups=[[s] for s in wrong_order]
    )

    m = judge_measures(db_session, judge_id=judge.id)

    assert (m.gold.value, m.gold.n) == (pytest.approx(0.5), 12)
    assert m.n_tasks == 0  # gold tasks measure against the known answer, not the consensus


# The floor


def test_a_judge_below_the_absolute_floor_is_paused_with_the_figure_in_the_reason(
    db_session: Session,
) -> None:
    world = _world(db_session, tasks=6)
    floors: dict[str, Any] = {"agreement_floor": 0.6, "relative_floor": None, "floor_min_pairs": 30}
    bad = make_judge(db_session, world.project.id, name="bad", **floors)
    good = make_judge(db_session, world.project.id, name="good", **floors)
    for i, (task, order) in enumerate(world.tasks):
        _judge_ranks(db_session, bad, task, _strict(order[::-1] if i % 2 else order))
        _judge_ranks(db_session, good, task, _strict(order))

    paused = enforce_agreement_floor(db_session, project_id=world.project.id)

    assert paused == [bad.id]
    db_session.refresh(bad)
    db_session.refresh(good)
    assert (bad.state, good.state) == ("paused", "active")
    assert bad.paused_reason is not None
    assert bad.paused_reason.startswith("agreement with people 0.50 (95% CI 0.")
    assert bad.paused_reason.endswith(", 36 pairs) is below the floor 0.60")
    assert enforce_agreement_floor(db_session, project_id=world.project.id) == []  # once


def test_too_few_pairs_or_no_floor_pauses_nobody(db_session: Session) -> None:
    world = _world(db_session, tasks=2)
    early = make_judge(db_session, world.project.id, name="early", floor_min_pairs=30)
    unfloored = make_judge(
        db_session, world.project.id, name="unfloored", agreement_floor=None, relative_floor=None
    )
    for task, order in world.tasks:
        _judge_ranks(db_session, early, task, _strict(order[::-1]))
        _judge_ranks(db_session, unfloored, task, _strict(order[::-1]))

    assert enforce_agreement_floor(db_session, project_id=world.project.id) == []
    assert judge_measures(db_session, judge_id=early.id).n_pairs == 12


# Out of the human figures


def _figures(session: Session, project: Project) -> dict[str, Any]:
    """Everything people's rankings decide, after a refit."""
    service.recompute(session, project_id=project.id)
    board = service.leaderboard(session, project_id=project.id)
    report = service.agreement_report(session, project_id=project.id)
    table = annotators.annotator_table(session, project_id=project.id)
    return {
        "versions": [(v.id, v.rating, v.comparisons, v.verdict) for v in board.versions],
        "agreement": (report.tasks_with_overlap, report.pairwise_agreement, report.kendall_tau),
        "annotators": [
            (a.user_id, a.rankings, a.shared_tasks, a.agreement) for a in report.annotators
        ],
        "table": [(r.user_id, r.rankings, r.shared_tasks, r.agreement) for r in table.rows],
        "reliability": sorted(
            (u, r.reliability, r.comparisons)
            for u, r in service.reliability_rows(session, project.id).items()
        ),
        "position": position_report(session, project.id),
    }


def _contrary_judge(session: Session, world: World) -> Judge:
    judge = make_judge(session, world.project.id, name="contrary")
    for task, order in world.tasks:
        _judge_ranks(session, judge, task, _strict(order[::-1]))
    for _ in range(3):  # and tasks no person reached
        task, samples = seeding.mixed_task(session, world.project, [world.base, world.new])
        _judge_ranks(session, judge, task, [samples[world.base.id], samples[world.new.id]])
    return judge


def test_judge_rankings_change_no_human_figure(db_session: Session) -> None:
    world = _world(db_session, tasks=6, people=3)
    before = _figures(db_session, world.project)

    judge = _contrary_judge(db_session, world)
    after = _figures(db_session, world.project)

    assert after == before
    assert after["position"] is None  # people's cards were not recorded; the judge's were
    assert judge.user_id not in {row[0] for row in after["table"]}
    assert after["versions"][0][0] == world.new.id


def test_counted_in_by_the_admin_judges_change_the_human_figures(db_session: Session) -> None:
    world = _world(db_session, tasks=6, people=3)
    before = _figures(db_session, world.project)
    judge = _contrary_judge(db_session, world)

    world.project.judges_in_human_figures = True
    db_session.flush()
    after = _figures(db_session, world.project)

    assert after["agreement"] != before["agreement"]
    assert after["versions"] != before["versions"]
    assert after["position"] is not None
    assert before["position"] is None
    assert judge.user_id in {row[0] for row in after["table"]}
    assert judge.user_id in {row[0] for row in after["reliability"]}


def test_the_leaderboard_of_judges_is_fitted_from_their_comparisons_only(
    db_session: Session,
) -> None:
    world = _world(db_session, tasks=6, people=2)
    _contrary_judge(db_session, world)
    service.recompute(db_session, project_id=world.project.id)

    people = service.leaderboard(db_session, project_id=world.project.id)
    ai = service.leaderboard(db_session, project_id=world.project.id, raters="ai")
    both = service.leaderboard(db_session, project_id=world.project.id, raters="all")

    assert (people.raters, ai.raters, both.raters) == ("human", "ai", "all")
    assert people.versions[0].id == world.new.id
    assert ai.versions[0].id == world.base.id  # the judge prefers the base version
    top = ai.versions[0]
    assert top.comparisons == 9 * 4  # 9 tasks, 4 cross-version pairs each
    assert both.versions[0].comparisons == 9 * 4 + 6 * 2 * 4
    stored = service.leaderboard(db_session, project_id=world.project.id, raters="human")
    assert stored == people  # the stored fit is the people's


def test_the_leaderboard_page_and_api_switch_raters(
    client: httpx.Client,
    admin: LoggedIn,  # noqa: F811
    make_token,  # type: ignore[no-untyped-def]  # noqa: F811
    db_session: Session,
) -> None:
    world = _world(db_session, tasks=3, people=1)
    _contrary_judge(db_session, world)
    service.recompute(db_session, project_id=world.project.id)
    db_session.commit()
    page = f"/admin/projects/{world.project.id}/leaderboard"
    api = f"/api/v1/projects/{world.project.id}/leaderboard"
    token = bearer(make_token("read"))

    html = client.get(page, params={"raters": "ai"})
    body = client.get(api, params={"raters": "ai"}, headers=token).json()
    bad_page = client.get(page, params={"raters": "robots"})
    bad_api = client.get(api, params={"raters": "robots"}, headers=token)

    assert html.status_code == 200
    assert '<strong data-raters="ai">' in html.text
    assert body["raters"] == "ai"
    assert body["versions"][0]["id"] == world.base.id
    assert client.get(api, headers=token).json()["versions"][0]["id"] == world.new.id
    assert (bad_page.status_code, bad_api.status_code) == (422, 422)


# Intervals


proportions = st.integers(min_value=0, max_value=10_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@given(proportions)
def test_the_wilson_interval_holds_the_estimate_inside_zero_one(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= k / n <= high


@given(st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=1, max_size=40))
def test_the_bootstrap_interval_holds_the_mean(values: list[float]) -> None:
    low, high = bootstrap_mean_interval(values, rounds=200)
    mean = sum(values) / len(values)
    assert -1.0 <= low <= mean + 1e-9
    assert mean - 1e-9 <= high <= 1.0


# The admin's setting


def test_the_settings_form_counts_judges_in_and_a_bad_value_changes_nothing(
    client: httpx.Client,
    admin: LoggedIn,  # noqa: F811
    db_session: Session,
) -> None:
    project = make_project(db_session)
    db_session.commit()
    url = f"/admin/projects/{project.id}/settings"

    page = client.get(f"/admin/projects/{project.id}")
    bad = client.post(url, data={"judges_in_human_figures": "maybe"}, headers=admin.htmx)
    db_session.refresh(project)
    unchanged = project.judges_in_human_figures
    good = client.post(url, data={"judges_in_human_figures": "true"}, headers=admin.htmx)
    db_session.refresh(project)

    assert 'name="judges_in_human_figures"' in page.text
    assert (bad.status_code, unchanged) == (422, False)
    assert good.status_code == 200
    assert 'name="judges_in_human_figures"' in good.text
    assert project.judges_in_human_figures is True


# The API and the partial


def test_the_measures_api_returns_the_figures_and_404_for_an_unknown_judge(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]  # noqa: F811
    db_session: Session,
) -> None:
    world = _world(db_session, tasks=2, people=1)
    judge = make_judge(db_session, world.project.id)
    for task, order in world.tasks:
        _judge_ranks(db_session, judge, task, _strict(order))
    db_session.commit()
    token = bearer(make_token("read"))

    found = client.get(f"/api/v1/judges/{judge.id}/measures", headers=token)
    missing = client.get("/api/v1/judges/999999/measures", headers=token)

    assert found.status_code == 200
    body = found.json()
    assert (body["judge_id"], body["n_tasks"], body["n_pairs"]) == (judge.id, 2, 12)
    assert body["agreement"]["value"] == 1.0
    assert body["kendall_tau"] == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 2}
    assert body["flip_rate"] == {"value": None, "low": None, "high": None, "n": 0}
    assert body["relative"]["judge_person"]["n"] == 12
    assert body["relative"]["ratio"]["value"] is None  # one person: nothing to compare with
    assert body["relative"]["undefined"] == "no two people ranked the same task yet"
    assert missing.status_code == 404


def test_the_partial_shows_the_figures_and_the_pause_reason(db_session: Session) -> None:
    from app.templating import templates

    world = _world(db_session, tasks=1, people=1)
    judge = make_judge(db_session, world.project.id)
    task, order = world.tasks[0]
    _judge_ranks(db_session, judge, task, _strict(order))
    judges.pause_judge(db_session, judge_id=judge.id, reason="agreement with people 0.10")
    partial = templates.env.get_template("_judge_measures.html")

    html = partial.render(judge=judge, measures=judge_measures(db_session, judge_id=judge.id))
    empty = partial.render(judge=judge, measures=None)

    assert "100%" in html
    assert "on 6 pairs of 1 task" in html
    assert "agreement with people 0.10" in html
    assert "Not measured yet." in empty


# The ratings job


def test_the_ratings_job_pauses_a_judge_below_its_floor(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "send_recompute", lambda project_id, *, countdown: None)
    monkeypatch.setattr(judges, "send_judge_run", lambda judge_id: None)
    with session_scope() as session:
        world = _world(session, tasks=3, people=2)
        judge = make_judge(session, world.project.id, floor_min_pairs=12)
        for task, order in world.tasks:
            _judge_ranks(session, judge, task, _strict(order[::-1]))
        service.note_new_rankings(session, project_id=world.project.id)
        project_id, judge_id = world.project.id, judge.id

    assert recompute_if_dirty(project_id) is True

    with session_scope() as session:
        stored = session.get_one(Judge, judge_id)
        assert stored.state == "paused"
        assert "relative to people -1.00" in (stored.paused_reason or "")
