"""The relative floor: a judge against each person beside people against each other; paused
only when significantly below it, never when people agree at chance; and the judge-data gate
of snapshots (an unmeasured or failing judge never trains a round)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.db import session_scope
from app.gold import service as gold
from app.judges import measurement
from app.judges import service as judges
from app.judges.measurement import floor_check, judge_measures, relative_figures
from app.judges.pausing import enforce_agreement_floor
from app.judges.schemas import JudgeCreate, form_fields
from app.models import (
    AnnotatorExclusion,
    Comparison,
    Judge,
    Project,
    Ranking,
    RankingTask,
    SnapshotComparison,
)
from app.rounds import snapshots
from rankloop.cli import app
from tests.factories import (
    make_judge,
    make_judge_ranking,
    make_project,
    make_ranking,
    make_task,
    make_user,
)
from tests.factories import task_sample_ids as sample_ids

# Pure figures


def _pair_world(
    a_person: float, a_judge: float, *, tasks: int = 3000, seed: int = 0
) -> tuple[dict[int, Any], dict[int, list[Any]]]:
    """Two-sample tasks whose true order is (1, 2): two people right with probability
    a_person each, a judge right with a_judge, independently."""
    rng = random.Random(seed)

    def ranks(right: float) -> list[list[int]]:
        return [[1], [2]] if rng.random() < right else [[2], [1]]

    judge = {t: ranks(a_judge) for t in range(tasks)}
    people = {t: [ranks(a_person), ranks(a_person)] for t in range(tasks)}
    return judge, people


@pytest.mark.parametrize(("a_person", "a_judge"), [(0.8, 0.65), (0.8, 0.8), (0.9, 0.6)])
def test_the_ratio_is_the_judges_reliability_relative_to_a_person(
    a_person: float, a_judge: float
) -> None:
    expected = (2 * a_judge - 1) / (2 * a_person - 1)

    m = relative_figures(*_pair_world(a_person, a_judge))

    assert m.undefined is None
    assert m.ratio.value == pytest.approx(expected, abs=0.1)
    assert m.ratio.low is not None
    assert m.ratio.high is not None
    assert m.ratio.low <= expected <= m.ratio.high
    assert m.judge_person.n == 6000  # the judge against each of the two people
    assert m.person_person.n == 3000


def test_people_at_chance_leave_the_ratio_undefined() -> None:
    m = relative_figures(*_pair_world(0.5, 0.9, tasks=400))

    assert m.ratio.value is None
    assert m.undefined is not None
    assert "no better than chance" in m.undefined


def test_ties_are_left_out_of_both_agreements() -> None:
    judge = {1: [[1, 2], [3]]}  # ties 1 and 2
    people = {1: [[[1], [2], [3]], [[2], [1], [3]]]}

    m = relative_figures(judge, people)

    assert (m.judge_person.n, m.judge_person.value) == (4, 1.0)  # (1,3), (2,3) per person
    assert (m.person_person.n, m.person_person.value) == (3, pytest.approx(2 / 3))


# Pausing


def _judge_ranks(session: Session, judge: Judge, task: RankingTask, order: list[int]) -> None:
    """The judge ranks the task's samples strictly in `order`, best first."""
    make_judge_ranking(session, judge, task, [[s] for s in order])


def _ranked_by_people(
    session: Session, *, tasks: int, agree: bool = True, **settings: Any
) -> tuple[Project, list[tuple[RankingTask, list[int]]]]:
    """Tasks of four samples ranked strictly by two people: alike, or one the reverse of the
    other (people at chance: person-person agreement 0)."""
    project = make_project(session, annotations_per_task=3, **settings)
    first, second = make_user(session), make_user(session)
    made = []
    for _ in range(tasks):
        task = make_task(session, project, k=4)
        order = sample_ids(session, task)
        make_ranking(session, task, first, [[s] for s in order])
        make_ranking(session, task, second, [[s] for s in (order if agree else order[::-1])])
        made.append((task, order))
    return project, made


def test_a_judge_significantly_below_the_relative_floor_is_paused_with_the_figures(
    db_session: Session,
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6)
    bad = make_judge(db_session, project.id, name="bad")
    good = make_judge(db_session, project.id, name="good")
    for task, order in tasks:
        _judge_ranks(db_session, bad, task, order[::-1])
        _judge_ranks(db_session, good, task, order)

    paused = enforce_agreement_floor(db_session, project_id=project.id)

    assert paused == [bad.id]
    db_session.refresh(bad)
    assert bad.paused_reason == (
        "relative to people -1.00 (95% CI -1.00–-1.00; judge–person 0.00, person–person 1.00, "
        "72 pairs) is below the floor 0.50"
    )
    assert good.state == "active"


def test_a_judge_whose_interval_reaches_the_floor_is_not_paused(db_session: Session) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6)
    judge = make_judge(db_session, project.id, floor_min_pairs=30)
    for i, (task, order) in enumerate(tasks):  # right on half the tasks: r = 0
        _judge_ranks(db_session, judge, task, order if i % 2 else order[::-1])

    check = floor_check(db_session, judge)

    assert check.established
    assert check.below == ()
    m = judge_measures(db_session, judge_id=judge.id).relative
    assert m.ratio.value == pytest.approx(0.0)
    assert m.ratio.high is not None
    assert m.ratio.high >= 0.5  # six tasks cannot say it is worth less than half a person
    assert enforce_agreement_floor(db_session, project_id=project.id) == []


def test_people_at_chance_pause_no_judge_and_the_measures_say_why(db_session: Session) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=8, agree=False)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order[::-1])

    assert enforce_agreement_floor(db_session, project_id=project.id) == []
    m = judge_measures(db_session, judge_id=judge.id).relative
    assert m.ratio.value is None
    assert m.undefined is not None
    assert m.undefined.startswith("people agree with each other no better than chance")


# The floor check is measured once per state of its data


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The judges whose relative figures were computed, in order (a spy, not a stand-in)."""
    calls: list[int] = []
    real = measurement.relative_to_people

    def counting(session: Session, judge: Judge) -> Any:
        calls.append(judge.id)
        return real(session, judge)

    monkeypatch.setattr(measurement, "relative_to_people", counting)
    return calls


def test_the_floor_check_is_not_measured_again_on_unchanged_data(
    db_session: Session, measured: list[int]
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6, judge_weight=0.5)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order[::-1])

    first = floor_check(db_session, judge)
    enforce_agreement_floor(db_session, project_id=project.id)  # pauses it
    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s")

    assert measured == [judge.id]
    assert floor_check(db_session, judge) is first
    assert snapshot.criteria["judges"][judge.name] == f"left out: {first.below[0]}"


def test_new_rankings_by_the_judge_change_the_floor_check(
    db_session: Session, measured: list[int]
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6)
    judge = make_judge(db_session, project.id)
    for task, order in tasks[:3]:
        _judge_ranks(db_session, judge, task, order[::-1])
    before = floor_check(db_session, judge)

    for task, order in tasks[3:]:
        _judge_ranks(db_session, judge, task, order[::-1])
    after = floor_check(db_session, judge)

    assert measured == [judge.id, judge.id]
    assert "36 pairs" in before.summary
    assert "72 pairs" in after.summary


def _a_person_ranks(session: Session, judge: Judge, task: RankingTask, order: list[int]) -> None:
    make_ranking(session, task, make_user(session), [[s] for s in order])


def _a_person_is_excluded(session: Session, judge: Judge, task: RankingTask, _: list[int]) -> None:
    ranker = session.scalars(
        select(Ranking.user_id).where(Ranking.task_id == task.id, Ranking.source == "human")
    ).first()
    session.add(AnnotatorExclusion(project_id=task.project_id, user_id=ranker))
    session.flush()


def _the_task_is_marked_gold(
    session: Session, judge: Judge, task: RankingTask, order: list[int]
) -> None:
    gold.mark_gold(
        session, project_id=task.project_id, task_id=task.id, groups=[[s] for s in order]
    )


def _the_floor_is_raised(session: Session, judge: Judge, task: RankingTask, _: list[int]) -> None:
    judge.relative_floor = 0.9
    session.flush()


@pytest.mark.parametrize(
    "change",
    [_a_person_ranks, _a_person_is_excluded, _the_task_is_marked_gold, _the_floor_is_raised],
)
def test_the_floor_check_is_measured_again_when_what_it_reads_changed(
    db_session: Session, measured: list[int], change: Any
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order)
    task = make_task(db_session, project, k=4)  # ranked by the judge and by one person
    order = sample_ids(db_session, task)
    _judge_ranks(db_session, judge, task, order)
    make_ranking(db_session, task, make_user(db_session), [[s] for s in order])
    floor_check(db_session, judge)

    change(db_session, judge, task, order)
    floor_check(db_session, judge)

    assert measured == [judge.id, judge.id]


def test_new_judges_default_to_the_relative_floor_alone() -> None:
    data = JudgeCreate(name="j", backend="simulated", model="sim")

    assert (data.relative_floor, data.agreement_floor) == (0.5, None)
    assert form_fields({"relative_floor": " 0.7 "}, editing=False)["relative_floor"] == "0.7"
    assert form_fields({"relative_floor": ""}, editing=True) == {
        "relative_floor": None,
        "flag_harm": False,
    }


@pytest.mark.usefixtures("app_database")
def test_the_cli_takes_a_relative_floor() -> None:
    with session_scope() as session:
        project_id = make_project(session).id
    args = ["judges", "add", str(project_id), "--name", "cli", "--backend", "simulated"]

    added = CliRunner().invoke(app, [*args, "--model", "sim", "--relative-floor", "0.8"])

    assert added.exit_code == 0, added.output
    with session_scope(readonly=True) as session:
        floor = session.scalars(select(Judge.relative_floor).where(Judge.project_id == project_id))
        assert floor.one() == 0.8


# The judge-data gate of snapshots


def _ai_weights(session: Session, snapshot_id: int) -> dict[int, set[float]]:
    """{judge user: weights of its comparisons in the snapshot}."""
    rows = session.execute(
        select(Comparison.user_id, SnapshotComparison.weight)
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .where(SnapshotComparison.snapshot_id == snapshot_id, Comparison.source == "ai")
    ).all()
    found: dict[int, set[float]] = {}
    for user_id, weight in rows:
        found.setdefault(user_id, set()).add(float(weight))
    return found


def test_an_unmeasured_judge_trains_nothing(db_session: Session) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=2, judge_weight=0.5)
    judge = make_judge(db_session, project.id, floor_min_pairs=30)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s")

    assert _ai_weights(db_session, snapshot.id) == {}
    assert snapshot.criteria["judges"] == {
        judge.name: "left out: 24 of 30 pairs shared with people"
    }


def test_a_measured_passing_judge_trains_at_the_judge_weight_even_when_paused_by_an_admin(
    db_session: Session,
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6, judge_weight=0.5)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order)
    judges.pause_judge(db_session, judge_id=judge.id, reason="endpoint costs")

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s")

    assert _ai_weights(db_session, snapshot.id) == {judge.user_id: {0.5}}
    assert snapshot.criteria["judges"][judge.name].startswith("admitted: relative to people 1.00")


def test_a_judge_below_its_floor_trains_nothing_not_even_its_earlier_rankings(
    db_session: Session,
) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6, judge_weight=0.5)
    good = make_judge(db_session, project.id, name="good")
    bad = make_judge(db_session, project.id, name="bad")
    for task, order in tasks:
        _judge_ranks(db_session, good, task, order)
        _judge_ranks(db_session, bad, task, order[::-1])
    earlier = snapshots.create_snapshot(db_session, project_id=project.id, name="before")
    enforce_agreement_floor(db_session, project_id=project.id)

    later = snapshots.create_snapshot(db_session, project_id=project.id, name="after")

    assert _ai_weights(db_session, earlier.id) == {good.user_id: {0.5}}  # measured already
    assert _ai_weights(db_session, later.id) == {good.user_id: {0.5}}
    assert re.match(
        r"left out: relative to people -1\.00 .* below the floor 0\.50$",
        later.criteria["judges"]["bad"],
    )


def test_people_at_chance_fail_no_floor_and_the_criteria_say_so(db_session: Session) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=8, agree=False, judge_weight=1)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s")

    assert _ai_weights(db_session, snapshot.id) == {judge.user_id: {1.0}}
    why = snapshot.criteria["judges"][judge.name]
    assert why.startswith("admitted: relative to people undefined (people agree")


def test_judge_only_trains_on_an_unmeasured_judge(db_session: Session) -> None:
    project = make_project(db_session, judge_only=True)
    judge = make_judge(db_session, project.id)
    task = make_task(db_session, project, k=3)
    _judge_ranks(db_session, judge, task, sample_ids(db_session, task))

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="rlaif")

    assert _ai_weights(db_session, snapshot.id) == {judge.user_id: {1.0}}
    assert "judges" not in snapshot.criteria


def test_snapshot_rankings_say_whose_they_are(db_session: Session) -> None:
    project, tasks = _ranked_by_people(db_session, tasks=6, judge_weight=0.5)
    judge = make_judge(db_session, project.id)
    for task, order in tasks:
        _judge_ranks(db_session, judge, task, order)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s")
    rankings = snapshots.ranked_responses(db_session, snapshot.id)

    by_source = {(r.source, r.weight) for r in rankings}
    assert by_source == {("human", 1.0), ("ai", 0.5)}
    assert sum(r.source == "ai" for r in rankings) == 6


def test_the_judges_page_partial_shows_the_ratio_and_peoples_own_agreement(
    db_session: Session,
) -> None:
    from app.templating import templates

    project, tasks = _ranked_by_people(db_session, tasks=6)
    judge = make_judge(db_session, project.id)
    for i, (task, order) in enumerate(tasks):
        _judge_ranks(db_session, judge, task, order if i % 2 else order[::-1])
    partial = templates.env.get_template("_judge_measures.html")

    html = partial.render(judge=judge, measures=judge_measures(db_session, judge_id=judge.id))

    assert "Relative to people" in html
    assert 'class="relative" data-value="0.0"' in html
    assert "floor 0.50 after 30 pairs" in html
    assert "People&rsquo;s own agreement" in html
    assert "100%" in html  # person-person
    assert "person&ndash;person, 36 pairs" in html
