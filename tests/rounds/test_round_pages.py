"""Round pages: the form shows one type's fields, bad input changes nothing, progress renders."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Project, RoundState, TrainingRound, WorkerHeartbeat
from app.rounds import service
from tests.factories import (
    make_project,
    make_ready_project,
    make_user,
    make_version,
    start_ready_round,
)
from tests.helpers import login
from tests.rounds.conftest import section


def test_rounds_page_shows_the_fields_of_the_chosen_type_only(
    client: httpx.Client, project: Project
) -> None:
    page = client.get(f"/admin/projects/{project.id}/rounds").text
    assert 'name="ppo.steps"' in page
    assert 'name="beta"' not in page
    fragment = client.get(
        f"/admin/projects/{project.id}/rounds",
        params={"type": "dpo"},
        headers={"HX-Request": "true"},
    ).text
    assert 'name="beta"' in fragment
    assert 'name="ppo.steps"' not in fragment
    assert "<html" not in fragment


def test_starting_a_round_redirects_to_its_live_progress_page(
    client: httpx.Client, db_session: Session, admin_csrf: str
) -> None:
    project = make_ready_project(db_session)
    response = client.post(
        f"/admin/projects/{project.id}/rounds",
        data={"type": "dpo", "beta": "0.2", "csrf_token": admin_csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    training_round = db_session.scalars(
        select(TrainingRound).where(TrainingRound.project_id == project.id)
    ).one()
    assert training_round.config["beta"] == 0.2
    page = client.get(response.headers["location"]).text
    assert 'id="round-bar"' in page
    assert 'hx-trigger="every 2s"' in page  # polls while not finished
    service.begin_stage(db_session, training_round.id, "policy")
    service.record_progress(
        db_session, training_round.id, step=2, total=4, metrics={"loss": 0.5}, series="policy"
    )
    page = client.get(response.headers["location"]).text
    assert "step 2 / 4" in page
    assert "<svg" in page


def test_cancel_from_the_page(client: httpx.Client, db_session: Session, admin_csrf: str) -> None:
    _, training_round = start_ready_round(db_session, "sft")
    response = client.post(
        f"/admin/rounds/{training_round.id}/cancel",
        headers={"X-CSRF-Token": admin_csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert training_round.state == RoundState.cancelled
    assert 'hx-trigger="every 2s"' not in client.get(f"/admin/rounds/{training_round.id}").text


def test_a_round_sampling_its_registered_version_shows_it_and_offers_no_cancel(
    client: httpx.Client, db_session: Session, admin_csrf: str
) -> None:
    project, training_round = start_ready_round(db_session, "sft")
    service.begin_stage(db_session, training_round.id, "policy")
    page = client.get(f"/admin/rounds/{training_round.id}").text
    assert "Cancel round" in page
    make_version(db_session, project, round_id=training_round.id)
    page = client.get(f"/admin/rounds/{training_round.id}").text
    assert "Registered policy version 2" in page
    assert "Cancel round" not in page
    response = client.post(
        f"/admin/rounds/{training_round.id}/cancel", headers={"X-CSRF-Token": admin_csrf}
    )
    assert response.status_code == 409
    assert training_round.cancel_requested is False


def test_annotators_cannot_see_round_pages(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, username="just-annotating")
    login(client, "just-annotating")
    project = make_project(db_session)
    assert client.get(f"/admin/projects/{project.id}/rounds").status_code == 403


def test_rounds_page_shows_workers_and_queue_lengths(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    from app.health import queue_lengths
    from worker.tasks import run_round_stage

    db_session.add_all(
        [
            WorkerHeartbeat(hostname="alive-worker@test", queues="training", last_seen_at=utcnow()),
            WorkerHeartbeat(
                hostname="gone-worker@test",
                queues="sampling",
                last_seen_at=utcnow() - timedelta(hours=1),
            ),
        ]
    )
    db_session.flush()
    waiting = queue_lengths()["sampling"]
    assert waiting is not None  # the broker of this run answers
    # a real message on the real broker; no worker runs in this test, so it stays queued
    # (worker fixtures purge the queues before they start)
    run_round_stage.apply_async(args=[0, "sampling"], queue="sampling")
    page = client.get(f"/admin/projects/{project.id}/rounds").text
    rows = {
        name: section(page, name, "</tr>") for name in ("alive-worker@test", "gone-worker@test")
    }
    assert "training" in rows["alive-worker@test"]
    assert "alive" in rows["alive-worker@test"]
    assert "silent" in rows["gone-worker@test"]
    assert f"sampling: {waiting + 1}" in page
    assert "training: " in page


def test_rounds_page_without_workers_says_how_to_start_one(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    db_session.execute(delete(WorkerHeartbeat))
    page = client.get(f"/admin/projects/{project.id}/rounds").text
    assert "No worker has reported yet" in page
    assert "rankloop worker" in page


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"type": "reward_ppo", "ppo.steps": "-3"}, "invalid fields"),
        ({"type": "reward_ppo", "ppo.steps": "many"}, "ppo.steps"),
        ({"type": "reward_ppo", "reward_model.heldout_fraction": "1.5"}, "heldout_fraction"),
        ({"type": "reward_ppo", "ppo.unknown_knob": "3"}, "unknown_knob"),
        ({"type": "dpo", "loss": "hinge"}, "loss"),
        ({"type": "ppo_classic"}, "type"),
    ],
    ids=[
        "bad-value",
        "not-a-number",
        "out-of-range",
        "unknown-field",
        "bad-choice",
        "unknown-type",
    ],
)
def test_start_form_refuses_invalid_input_with_the_field_and_creates_nothing(
    client: httpx.Client,
    db_session: Session,
    admin_csrf: str,
    project: Project,
    form: dict[str, str],
    field: str,
) -> None:
    response = client.post(
        f"/admin/projects/{project.id}/rounds", data={**form, "csrf_token": admin_csrf}
    )
    assert response.status_code == 422
    assert field in response.text
    rounds = db_session.scalars(
        select(TrainingRound).where(TrainingRound.project_id == project.id)
    ).all()
    assert rounds == []


def test_ids_too_large_for_the_database_are_422(client: httpx.Client, admin_csrf: str) -> None:
    headers = {"X-CSRF-Token": admin_csrf}
    assert client.get(f"/admin/rounds/{2**31}").status_code == 422
    assert client.get(f"/admin/projects/{2**63}/rounds").status_code == 422
    assert client.post(f"/admin/rounds/{2**31}/cancel", headers=headers).status_code == 422
    assert client.post(f"/admin/tokens/{2**31}/revoke", headers=headers).status_code == 422
    assert (
        client.post(
            "/annotate/project", headers=headers, data={"project_id": str(2**63)}
        ).status_code
        == 422
    )


@pytest.mark.parametrize(
    "form", [{"seed": "1", "seed.x": "2"}, {"ppo.steps": "2", "ppo": "1"}], ids=["value", "group"]
)
def test_a_name_used_as_both_value_and_group_is_422_and_starts_nothing(
    client: httpx.Client,
    db_session: Session,
    admin_csrf: str,
    project: Project,
    form: dict[str, str],
) -> None:

    response = client.post(
        f"/admin/projects/{project.id}/rounds",
        data={"type": "reward_ppo", **form},
        headers={"X-CSRF-Token": admin_csrf},
    )

    assert response.status_code == 422
    assert db_session.scalars(select(TrainingRound)).all() == []


@pytest.mark.usefixtures("admin_csrf")
def test_the_form_shows_the_sized_values_and_why_before_the_round_starts(
    client: httpx.Client, db_session: Session
) -> None:
    from app.projects.service import add_prompts

    project = make_project(db_session, temperature=0.7, max_new_tokens=40)
    add_prompts(db_session, project_id=project.id, contents=[f"q {i}" for i in range(80)])
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}/rounds").text

    assert 'data-field="ppo.temperature">Blank: <strong>0.7</strong>' in page
    assert 'data-field="ppo.max_new_tokens">Blank: <strong>40</strong>' in page
    assert 'data-field="eval_prompts">Blank: <strong>20</strong>' in page  # a quarter of 80
    assert "the project&#39;s sampling temperature" in page
    assert 'data-field="seed">Blank: <strong>new each round</strong>' in page


@pytest.mark.usefixtures("admin_csrf")
def test_the_round_page_labels_the_gate_and_lists_what_was_sized(
    client: httpx.Client, db_session: Session
) -> None:
    _, training_round = start_ready_round(db_session, "reward_ppo")
    service.set_summary(
        db_session,
        training_round.id,
        "gate",
        {"kl": 1.5, "score_gain_low": 0.1, "passed": True, "length_correlation": None},
    )
    db_session.commit()

    page = client.get(f"/admin/rounds/{training_round.id}").text

    assert "gain interval, low end (reward std units)" in page
    assert "score_gain_low" not in page
    gate = section(page, 'id="round-gate"', "</table>")
    assert '<th>decision</th><td class="state-done">passed</td>' in gate
    assert "True" not in gate
    assert "not measured" in gate  # length_correlation: None
    assert 'id="round-sizing"' in page
    assert "derived from the round&#39;s id" in page


def test_the_round_page_writes_nothing_even_for_a_round_whose_worker_died(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    """Stale rounds are the workers' reaper's to fail (worker/reaper.py), never a GET's."""
    from sqlalchemy import event

    silent = TrainingRound(
        project_id=project.id,
        number=1,
        type="dpo",
        state=RoundState.policy,
        started_at=utcnow() - timedelta(hours=2),
        heartbeat_at=utcnow() - timedelta(hours=1),
    )
    db_session.add(silent)
    db_session.commit()
    writes: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    connection = db_session.connection()
    event.listen(connection, "before_cursor_execute", record)
    try:
        for headers in ({}, {"HX-Request": "true"}):  # the page and its polled fragment
            assert client.get(f"/admin/rounds/{silent.id}", headers=headers).status_code == 200
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert writes == []
    db_session.refresh(silent)
    assert silent.state == RoundState.policy
