"""The three uses of judge rankings (suggestions, training data, exports) and the judge's
harm suggestions: each follows its project setting, and judge rows never slip in by default."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from app.judges import suggestions
from app.judges.suggestions import suggestion_draw
from app.models import (
    Assignment,
    Comparison,
    Project,
    Ranking,
    RankingTask,
    Sample,
    SampleFlag,
    SnapshotComparison,
    TaskSample,
    User,
)
from app.rounds import snapshots
from app.rounds.types.reward_ppo import RewardPPOConfig
from app.seeds import derived_seed
from tests.annotation.conftest import Annotator, make_member
from tests.conftest import FreshDatabase
from tests.factories import (
    make_ai_ranking,
    make_project,
    make_ranking,
    make_task,
    make_user,
    task_sample_ids,
)


def make_judge_user(session: Session) -> User:
    """The users row a judge ranks as (kind 'model')."""
    return make_user(session, kind="model")


def _weights_by_source(session: Session, snapshot_id: int) -> dict[str, set[float]]:
    rows = session.execute(
        select(Comparison.source, SnapshotComparison.weight)
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .where(SnapshotComparison.snapshot_id == snapshot_id)
    ).all()
    found: dict[str, set[float]] = {}
    for source, weight in rows:
        found.setdefault(source, set()).add(float(weight))
    return found


def _unfloored_judge(session: Session, project_id: int, user: User, **fields: Any) -> Any:
    """A judge with no floor, measured once it shares a pair with people: the snapshot's gate
    admits it (tests/judges/test_relative_floor.py tests the gate itself)."""
    from app.models import Judge

    judge = Judge(
        project_id=project_id,
        user_id=user.id,
        name="critic",
        backend="simulated",
        model="sim",
        agreement_floor=None,
        relative_floor=None,
        floor_min_pairs=1,
        **fields,
    )
    session.add(judge)
    session.flush()
    return judge


def _project_ranked_by_both(session: Session, **settings: Any) -> Project:
    """One task ranked by a person (3 pairs) and by a judge (3 pairs, the reverse order)."""
    project = make_project(session, **settings)
    task = make_task(session, project, k=3)
    a, b, c = task_sample_ids(session, task)
    make_ranking(session, task, make_user(session), [[a], [b], [c]])
    judge_user = make_judge_user(session)
    judge = _unfloored_judge(session, project.id, judge_user)
    make_ai_ranking(session, task, judge_user, [[c], [b], [a]], judge_id=judge.id)
    return project


# Training data


def test_snapshot_leaves_judge_comparisons_out_at_weight_zero(db_session: Session) -> None:
    project = _project_ranked_by_both(db_session)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="default")

    assert _weights_by_source(db_session, snapshot.id) == {"human": {1.0}}
    assert snapshot.criteria["judge_comparisons"] == "left out"


def test_snapshot_weighs_judge_comparisons_by_the_project_judge_weight(
    db_session: Session,
) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.5)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="weighted")

    assert _weights_by_source(db_session, snapshot.id) == {"human": {1.0}, "ai": {0.5}}
    assert snapshot.comparison_count == 6
    assert snapshot.criteria["judge_comparisons"] == "weight 0.5"
    weights = sorted(r.weight for r in snapshots.ranked_responses(db_session, snapshot.id))
    assert weights == [0.5, 1.0]


def test_round_judge_settings_override_the_project(db_session: Session) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.5)

    none = snapshots.create_snapshot(db_session, project_id=project.id, name="r", judge_weight=0)
    more = snapshots.create_snapshot(db_session, project_id=project.id, name="r2", judge_weight=2)

    assert _weights_by_source(db_session, none.id) == {"human": {1.0}}
    assert _weights_by_source(db_session, more.id) == {"human": {1.0}, "ai": {2.0}}


def test_judge_only_snapshot_carries_only_judge_comparisons_at_weight_one(
    db_session: Session,
) -> None:
    project = _project_ranked_by_both(db_session, judge_weight=0.3)

    by_round = snapshots.create_snapshot(
        db_session, project_id=project.id, name="rlaif", judge_only=True
    )
    project.judge_only = True
    by_project = snapshots.create_snapshot(db_session, project_id=project.id, name="rlaif 2")

    for snapshot in (by_round, by_project):
        assert _weights_by_source(db_session, snapshot.id) == {"ai": {1.0}}
        assert snapshot.criteria["judge_comparisons"] == "only (weight 1)"


def test_reward_model_round_configs_take_the_optional_judge_settings() -> None:
    config = RewardPPOConfig.model_validate({"judge_weight": 0.25, "judge_only": False})
    assert (config.judge_weight, config.judge_only) == (0.25, False)
    assert RewardPPOConfig().judge_weight is None  # blank: the project's


def test_suggested_harmful_flags_keep_samples_in_training_but_harmful_ones_do_not(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    person, judge = make_user(db_session), make_judge_user(db_session)
    task = make_task(db_session, project, k=3)
    a, b, c = task_sample_ids(db_session, task)
    make_ranking(db_session, task, person, [[a], [b], [c]])
    db_session.add(SampleFlag(sample_id=c, user_id=judge.id, kind="suggested_harmful"))
    db_session.flush()
    suggested = snapshots.create_snapshot(db_session, project_id=project.id, name="suggested")

    db_session.add(SampleFlag(sample_id=c, user_id=person.id, reason="unsafe"))
    db_session.flush()
    flagged = snapshots.create_snapshot(db_session, project_id=project.id, name="flagged")

    assert suggested.comparison_count == 3
    assert flagged.comparison_count == 1  # only a > b remains


# Exports


@dataclass
class ExportWorld:
    project: int
    token: str
    human_ranking: int
    ai_ranking: int


@pytest.fixture(scope="module")
def export_world(app_database: FreshDatabase) -> ExportWorld:
    """Committed rows (the export streams through its own session): one task ranked by a
    person and by a judge."""
    from app.models import Role
    from app.tokens import service as tokens

    with app_database.session() as session:
        admin = make_user(session, role=Role.admin)
        project = make_project(session)
        task = make_task(session, project, k=3)
        a, b, c = task_sample_ids(session, task)
        person = make_ranking(session, task, make_user(session), [[a], [b], [c]])
        judge_user = make_judge_user(session)
        judge = _unfloored_judge(session, project.id, judge_user, prompt_version=3)
        ai = make_ai_ranking(
            session, task, judge_user, [[c], [b], [a]], judge_id=judge.id, judge_prompt_version=3
        )
        token = tokens.create_token(
            session, name="export", scopes=["read"], created_by_id=admin.id
        ).secret
        world = ExportWorld(project.id, token, person.id, ai.id)
        session.commit()
    return world


@pytest.fixture(scope="module")
def export_api(app_database: FreshDatabase) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


def _export(api: TestClient, world: ExportWorld, kind: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(
        f"/api/v1/projects/{world.project}/{kind}.jsonl",
        params=params,
        headers={"Authorization": f"Bearer {world.token}", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_default_exports_hold_no_judge_rows(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    rankings = _export(export_api, export_world, "rankings")
    pairs = _export(export_api, export_world, "pairs")

    assert [(r["ranking_id"], r["source"]) for r in rankings] == [
        (export_world.human_ranking, "human")
    ]
    assert "judge" not in rankings[0]
    assert len(pairs) == 3
    assert {p["source"] for p in pairs} == {"human"}


def test_source_ai_exports_only_judge_rows_with_the_judge_and_prompt_version(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    (ranking,) = _export(export_api, export_world, "rankings", source="ai")
    pairs = _export(export_api, export_world, "pairs", source="ai")

    assert ranking["ranking_id"] == export_world.ai_ranking
    assert (ranking["source"], ranking["judge"], ranking["judge_prompt_version"]) == (
        "ai",
        "critic",
        3,
    )
    assert len(pairs) == 3
    assert {p["source"] for p in pairs} == {"ai"}


def test_source_all_exports_both_with_one_schema(
    export_api: TestClient, export_world: ExportWorld
) -> None:
    rankings = _export(export_api, export_world, "rankings", source="all")
    pairs = _export(export_api, export_world, "pairs", source="all")

    assert [(r["source"], r["judge"], r["judge_prompt_version"]) for r in rankings] == [
        ("human", "", 0),
        ("ai", "critic", 3),
    ]
    assert sorted(p["source"] for p in pairs) == ["ai"] * 3 + ["human"] * 3


def test_an_unknown_source_is_422(export_api: TestClient, export_world: ExportWorld) -> None:
    for kind in ("rankings", "pairs"):
        response = export_api.get(
            f"/api/v1/projects/{export_world.project}/{kind}.jsonl",
            params={"source": "robots"},
            headers={"Authorization": f"Bearer {export_world.token}"},
        )
        assert response.status_code == 422


# Suggestions


def _judge(session: Session, project: Project, name: str = "critic") -> tuple[User, Any]:
    from app.models import Judge

    judge_user = make_judge_user(session)
    judge = Judge(
        project_id=project.id, user_id=judge_user.id, name=name, backend="simulated", model="sim"
    )
    session.add(judge)
    session.flush()
    return judge_user, judge


def _judged_tasks(session: Session, project: Project, n: int) -> list[RankingTask]:
    """`n` tasks, each ranked by one active judge in sample order."""
    judge_user, judge = _judge(session, project)
    tasks = [make_task(session, project, k=3) for _ in range(n)]
    for task in tasks:
        make_ai_ranking(
            session,
            task,
            judge_user,
            [[s] for s in task_sample_ids(session, task)],
            judge_id=judge.id,
        )
    return tasks


def _lease_html(annotator: Annotator) -> tuple[int, str]:
    response = annotator.post("/annotate/next", htmx=True)
    assert response.status_code == 200, response.text
    match = re.search(r'data-task-id="(\d+)"', response.text)
    assert match, response.text
    return int(match.group(1)), response.text


def test_the_control_share_hides_the_suggestion_on_the_drawn_leases(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, annotations_per_task=1, judge_suggestions=True)
    tasks = _judged_tasks(db_session, project, 6)
    member = make_member(db_session, project)
    draws = sorted(
        random.Random(derived_seed(f"suggestion:{member.id}", t.id)).random() for t in tasks
    )
    project.suggestion_control_share = (draws[2] + draws[3]) / 2  # three hidden, three shown
    annotator = log_in(member)

    seen: dict[str, int] = {"shown": 0, "hidden": 0}
    for _ in tasks:
        task_id, html = _lease_html(annotator)
        expected = suggestion_draw(
            user_id=member.id, task_id=task_id, control_share=project.suggestion_control_share
        )
        lease = db_session.scalars(
            select(Assignment).where(Assignment.task_id == task_id, Assignment.user_id == member.id)
        ).one()
        db_session.refresh(lease)
        assert lease.suggestion == expected
        assert ('id="ai-suggestion"' in html) == (expected == "shown")
        assert ("AI suggestion — check it yourself" in html) == (expected == "shown")
        seen[expected] += 1
        ids = [
            s.id
            for s in db_session.scalars(
                select(Sample).join(TaskSample).where(TaskSample.task_id == task_id)
            )
        ]
        submitted = annotator.submit(task_id, {"groups": [[i] for i in reversed(ids)]})
        assert submitted.status_code == 200, submitted.text
        ranking = db_session.get(Ranking, submitted.json()["ranking_id"])
        assert ranking is not None
        db_session.refresh(ranking)
        assert ranking.suggestion == expected  # copied from the lease
    assert seen == {"shown": 3, "hidden": 3}


def test_a_shown_suggestion_lists_the_judge_order_by_card_number_and_ranks_nothing(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, judge_suggestions=True, suggestion_control_share=0.0)
    (task,) = _judged_tasks(db_session, project, 1)
    annotator = log_in(make_member(db_session, project))

    shown = annotator.next_task()["task"]

    number = {s["id"]: s["number"] for s in shown["samples"]}
    judge_ids = task_sample_ids(db_session, task)
    assert shown["suggestion"]["groups"] == [[i] for i in judge_ids]
    assert shown["suggestion"]["numbers"] == [[number[i]] for i in judge_ids]
    assert shown["suggestion"]["label"] == "AI suggestion — check it yourself"


def test_no_suggestion_when_suggestions_are_off_or_no_judge_ranked(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    off = make_project(db_session)
    _judged_tasks(db_session, off, 1)
    unjudged = make_project(db_session, judge_suggestions=True, suggestion_control_share=0.0)
    make_task(db_session, unjudged, k=3)
    for project in (off, unjudged):
        annotator = log_in(make_member(db_session, project))
        task_id, html = _lease_html(annotator)
        assert 'id="ai-suggestion"' not in html
        lease = db_session.scalars(select(Assignment).where(Assignment.task_id == task_id)).one()
        db_session.refresh(lease)
        assert lease.suggestion is None


def test_a_paused_judge_suggests_nothing(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, judge_suggestions=True, suggestion_control_share=0.0)
    (task,) = _judged_tasks(db_session, project, 1)
    assert suggestions.judge_order(db_session, task.id) is not None
    from app.models import Judge

    for judge in db_session.scalars(select(Judge).where(Judge.project_id == project.id)):
        judge.state = "paused"
    db_session.flush()

    assert suggestions.judge_order(db_session, task.id) is None


def test_a_gold_task_shows_no_suggestion_and_no_harm_mark(db_session: Session) -> None:
    """Gold tasks measure people: a judge's order or harm flag there would let them copy it."""
    from app.annotation import service as annotation
    from app.annotation.schemas import SubmitRanking
    from app.gold import service as gold

    project = make_project(
        db_session,
        annotations_per_task=1,
        gold_rate=0.5,
        judge_suggestions=True,
        suggestion_control_share=0.0,
    )
    gold_task, *normal = _judged_tasks(db_session, project, 8)
    judge_user = db_session.get(User, db_session.scalars(select(Ranking.user_id)).first())
    assert judge_user is not None
    ids = task_sample_ids(db_session, gold_task)
    gold.mark_gold(
        db_session, project_id=project.id, task_id=gold_task.id, groups=[[i] for i in ids]
    )
    for task in (gold_task, normal[0]):
        db_session.add(
            SampleFlag(
                sample_id=task_sample_ids(db_session, task)[0],
                user_id=judge_user.id,
                kind="suggested_harmful",
                reason="threat",
            )
        )
    member = make_member(db_session, project)

    seen: dict[bool, list[tuple[Any, ...]]] = {True: [], False: []}
    for _ in range(len(normal) + 1):
        view = annotation.next_task(db_session, user_id=member.id, chosen_project_id=project.id)
        assert view.task is not None
        lease = db_session.scalars(
            select(Assignment).where(
                Assignment.task_id == view.task.id, Assignment.user_id == member.id
            )
        ).one()
        marks = tuple(s.suggested_harmful for s in view.task.samples if s.suggested_harmful)
        seen[view.task.id == gold_task.id].append((lease.suggestion, view.task.suggestion, marks))
        annotation.submit_ranking(
            db_session,
            task_id=view.task.id,
            user_id=member.id,
            submission=SubmitRanking(groups=[[s.id] for s in view.task.samples]),
        )

    assert seen[True] == [(None, None, ())]  # the gold task, leased once, bare
    assert len(seen[False]) == len(normal)
    assert all(lease == "shown" and shown is not None for lease, shown, _ in seen[False])
    assert sum(1 for *_, marks in seen[False] if marks == ("threat",)) == 1


def test_a_lease_and_its_view_read_the_gold_flag_once(db_session: Session) -> None:
    """The lease knows whether it took a gold task and the view reads the flag with the
    task's rows: the suggestion and the harm marks look nothing up again."""
    from sqlalchemy import event

    from app.annotation import service as annotation

    project = make_project(
        db_session, annotations_per_task=1, judge_suggestions=True, suggestion_control_share=0.0
    )
    (task,) = _judged_tasks(db_session, project, 1)
    member = make_member(db_session, project)
    reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "ranking_tasks.gold" in statement.split("FROM", 1)[0]:  # gold read as a column
            reads.append(statement)

    connection = db_session.connection()
    event.listen(connection, "before_cursor_execute", record)
    try:
        view = annotation.next_task(db_session, user_id=member.id, chosen_project_id=project.id)
    finally:
        event.remove(connection, "before_cursor_execute", record)

    assert view.task is not None
    assert view.task.id == task.id
    assert view.task.suggestion is not None  # suggestions on, a judge ranked it, not gold
    assert len(reads) == 1, reads


def test_a_judge_harm_suggestion_is_marked_on_the_card(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session)
    task = make_task(db_session, project, k=3)
    judge_user, _ = _judge(db_session, project)
    flagged = task_sample_ids(db_session, task)[1]
    db_session.add(
        SampleFlag(
            sample_id=flagged, user_id=judge_user.id, kind="suggested_harmful", reason="threat"
        )
    )
    annotator = log_in(make_member(db_session, project))

    _, html = _lease_html(annotator)
    shown = annotator.next_task()["task"]

    assert html.count("AI: possibly harmful — your call") == 1
    assert 'title="threat"' in html
    marks = {s["id"]: s["suggested_harmful"] for s in shown["samples"]}
    assert marks.pop(flagged) == "threat"
    assert set(marks.values()) == {None}


def test_the_report_counts_kept_orders_with_and_without_the_suggestion(
    db_session: Session,
) -> None:
    project = make_project(db_session, judge_suggestions=True)
    tasks = _judged_tasks(db_session, project, 4)  # the judge ranks each [[a], [b], [c]]
    person = make_user(db_session)
    orders = [
        ("shown", lambda a, b, c: [[a], [b], [c]]),  # kept: top kept, 3/3 pairs
        ("shown", lambda a, b, c: [[a], [c], [b]]),  # top kept, 2/3 pairs
        ("hidden", lambda a, b, c: [[b], [a], [c]]),  # top changed, 2/3 pairs
        ("hidden", lambda a, b, c: [[c, b], [a]]),  # top changed, 0/2 (the tie not compared)
    ]
    for task, (arm, order) in zip(tasks, orders, strict=True):
        ranking = make_ranking(db_session, task, person, order(*task_sample_ids(db_session, task)))
        ranking.suggestion = arm
    db_session.flush()

    report = suggestions.suggestion_report(db_session, project_id=project.id)

    assert (report.shown.rankings, report.shown.kept_top) == (2, 2)
    assert (report.shown.agreeing_pairs, report.shown.compared_pairs) == (5, 6)
    assert (report.hidden.rankings, report.hidden.kept_top) == (2, 0)
    assert (report.hidden.agreeing_pairs, report.hidden.compared_pairs) == (2, 5)
    assert report.anchoring == 1.0


def test_the_report_is_served_by_the_api(export_api: TestClient, export_world: ExportWorld) -> None:
    headers = {"Authorization": f"Bearer {export_world.token}"}
    response = export_api.get(
        f"/api/v1/projects/{export_world.project}/suggestions/report", headers=headers
    )
    missing = export_api.get("/api/v1/projects/999999/suggestions/report", headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["enabled"], body["control_share"]) == (False, 0.25)
    assert body["shown"]["rankings"] == body["hidden"]["rankings"] == 0
    assert missing.status_code == 404


# Settings


def test_the_settings_form_saves_the_judge_uses_and_refuses_bad_values(
    client: TestClient, db_session: Session
) -> None:
    from app.models import Role
    from tests.helpers import login_new_user

    project = make_project(db_session)
    db_session.commit()
    csrf = login_new_user(client, db_session, "judge-admin", Role.admin)
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    uses = {
        "judge_suggestions": "true",
        "suggestion_control_share": "0.4",
        "judge_weight": "0.5",
        "judge_only": "false",
    }

    saved = client.post(f"/admin/projects/{project.id}/settings", data=uses, headers=headers)
    refused = client.post(
        f"/admin/projects/{project.id}/settings",
        data={"judge_weight": "0.1", "suggestion_control_share": "1.5"},
        headers=headers,
    )

    assert saved.status_code == 200, saved.text
    assert 'id="judge-uses"' in saved.text
    assert refused.status_code == 422
    assert "between 0.0 and 1.0" in refused.text
    db_session.refresh(project)
    assert (project.judge_suggestions, project.suggestion_control_share) == (True, 0.4)
    assert (project.judge_weight, project.judge_only) == (0.5, False)


def test_projects_set_changes_the_judge_uses(migrated_engine: Engine) -> None:
    from typer.testing import CliRunner

    from app.db import session_scope
    from rankloop.cli import app

    name = "cli judge uses"
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["projects", "create", "--name", name]).exit_code == 0
        result = runner.invoke(
            app,
            [
                "projects", "set", name, "--set", "judge_suggestions=on",
                "--set", "suggestion-control-share=0.3", "--set", "judge_weight=0.5",
                "--set", "judge_only=false",
            ],
        )  # fmt: skip
        refused = runner.invoke(app, ["projects", "set", name, "--set", "judge_weight=-1"])

        assert result.exit_code == 0, result.output
        assert refused.exit_code == 2, refused.output
        with session_scope(readonly=True) as session:  # the database the command used
            project = session.scalars(select(Project).where(Project.name == name)).one()
            assert (project.judge_suggestions, project.suggestion_control_share) == (True, 0.3)
            assert (project.judge_weight, project.judge_only) == (0.5, False)
    finally:
        with session_scope() as session:
            session.execute(delete(Project).where(Project.name == name))


def test_the_project_page_shows_the_report_once_suggestions_are_on(
    client: TestClient, db_session: Session
) -> None:
    from app.models import Role
    from tests.helpers import login_new_user

    project = make_project(db_session)
    db_session.commit()
    login_new_user(client, db_session, "report-admin", Role.admin)

    before = client.get(f"/admin/projects/{project.id}")
    project.judge_suggestions = True
    db_session.commit()
    after = client.get(f"/admin/projects/{project.id}")

    assert before.status_code == after.status_code == 200
    assert 'id="suggestion-report"' not in before.text
    assert 'id="suggestion-report"' in after.text
    assert 'id="suggestion-hidden"' in after.text


def test_the_round_form_leaves_the_judge_settings_to_the_project_unless_chosen(
    client: TestClient, db_session: Session
) -> None:
    from app.models import Role
    from app.rounds.pages import form_to_config
    from tests.helpers import login_new_user

    project = make_project(db_session, judge_only=True)
    db_session.commit()
    login_new_user(client, db_session, "round-admin", Role.admin)

    page = client.get(f"/admin/projects/{project.id}/rounds", params={"type": "dpo"}).text

    select_html = page.split('name="judge_only"', 1)[1].split("</select>", 1)[0]
    assert '<option value="" selected>blank</option>' in select_html
    assert 'name="judge_weight"' in page
    config = form_to_config({"type": "dpo", "judge_only": "", "judge_weight": ""})
    assert "judge_only" not in config  # blank: the project's judge_only=True holds


@pytest.mark.parametrize(
    ("overrides", "usable"),
    [({}, 1), ({"judge_weight": 0.5}, 2), ({"judge_only": True}, 1)],
    ids=["default", "weighted", "judge only"],
)
def test_the_reward_model_job_snapshots_with_the_round_judge_settings(
    export_world: ExportWorld, overrides: dict[str, Any], usable: int
) -> None:
    """Too few rankings fails before any training: the message counts what the snapshot took."""
    from worker.jobs.reward_model import train_project_reward_model

    with pytest.raises(ValueError, match=f"the snapshot has {usable} usable ranking"):
        train_project_reward_model(export_world.project, **overrides)
