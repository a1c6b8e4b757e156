"""What the round page shows of a round's numbers: the gate's verdict, the time left, charts.

Rounds are written as rows (the worker's output), not started: these tests are about display.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Project, Role, RoundState, RoundType, TrainingRound
from tests.factories import make_project, make_user
from tests.helpers import login
from tests.rounds.conftest import section


def _admin(client: httpx.Client, db_session: Session) -> None:
    make_user(db_session, role=Role.admin, username="display-admin")
    login(client, "display-admin")


def _round(db_session: Session, project: Project, **fields: Any) -> TrainingRound:
    fields = {"state": RoundState.done, **fields}
    training_round = TrainingRound(
        project_id=project.id, number=1, type=RoundType.reward_ppo, **fields
    )
    db_session.add(training_round)
    db_session.commit()
    return training_round


def _gate_table(page: str) -> str:
    return section(page, 'id="round-gate"', "</table>")


@pytest.mark.parametrize(("passed", "shown"), [(True, "passed"), (False, "failed")])
def test_the_gate_says_passed_or_failed_and_labels_every_figure_with_its_unit(
    client: httpx.Client, db_session: Session, passed: bool, shown: str
) -> None:
    _admin(client, db_session)
    gate = {
        "kl": 1.5,
        "max_kl": 8.0,
        "score_gain": 0.2,
        "score_gain_low": 0.05,
        "score_gain_high": 0.3,
        "min_score_gain": 0.0,
        "passed": passed,
        "length_correlation": None,
        "version": 2,
    }
    training_round = _round(db_session, make_project(db_session), metrics={"gate": gate})

    table = _gate_table(client.get(f"/admin/rounds/{training_round.id}").text)

    state = "state-done" if passed else "state-failed"
    assert table.split("</tr>", 1)[0].endswith(f'<th>decision</th><td class="{state}">{shown}</td>')
    assert "gain interval, low end (reward std units)" in table
    assert "KL bound (nats per answer)" in table
    assert "registered as policy version" in table
    assert "not measured" in table  # None
    for raw in ("True", "False", "score_gain_low", "max_kl", "_"):
        assert raw not in table.replace("state-", "")


@pytest.mark.parametrize(
    ("eta_seconds", "text"),
    [(12.0, "under a minute"), (190.0, "about 3 min"), (4810.0, "about 1 h 20 min")],
)
def test_the_time_left_in_a_stage_reads_as_people_say_it(
    client: httpx.Client, db_session: Session, eta_seconds: float, text: str
) -> None:
    _admin(client, db_session)
    progress = {
        "stage": "policy",
        "stage_index": 2,
        "stages": 4,
        "step": 3,
        "total": 120,
        "eta_seconds": eta_seconds,
    }
    training_round = _round(
        db_session,
        make_project(db_session),
        state=RoundState.policy,
        progress=progress,
        heartbeat_at=utcnow(),
    )

    page = client.get(f"/admin/rounds/{training_round.id}").text

    assert f'step 3 / 120, <span id="round-eta">{text} left in this stage</span>' in page
    assert "0.0 min" not in page


def test_a_one_epoch_reward_model_draws_a_point_on_labelled_axes(
    client: httpx.Client, db_session: Session
) -> None:
    _admin(client, db_session)
    metrics = {"reward_model": [{"step": 1, "epoch": 1.0, "loss": 0.69, "heldout_accuracy": 0.625}]}
    training_round = _round(db_session, make_project(db_session), metrics=metrics)

    page = client.get(f"/admin/rounds/{training_round.id}").text

    chart = section(page, 'id="chart-reward-model-accuracy"', "</figure>")
    assert chart.count("<circle") == 1
    assert "<title>epoch 1: 0.625</title>" in chart
    assert ">held-out pair accuracy (share of pairs, 0–1)</text>" in chart
    assert ">epoch</text>" in chart
    assert ">0.0</text>" in chart
    assert ">1.0</text>" in chart
    assert "−0.33" not in chart
