"""The round page says, stage by stage, how many prompts were shortened to fit the model
(issue 21: every stage counts them). Rounds are written as rows, as the worker leaves them."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session

from app.models import Role, RoundState, RoundType, TrainingRound
from tests.factories import make_project, make_user
from tests.helpers import login
from tests.rounds.conftest import section


def _page_of(client: httpx.Client, db_session: Session, metrics: dict[str, object]) -> str:
    make_user(db_session, role=Role.admin, username="cuts-admin")
    login(client, "cuts-admin")
    training_round = TrainingRound(
        project_id=make_project(db_session).id,
        number=1,
        type=RoundType.reward_ppo,
        state=RoundState.done,
        metrics=metrics,
    )
    db_session.add(training_round)
    db_session.commit()
    return client.get(f"/admin/rounds/{training_round.id}").text


def test_each_stage_that_shortened_prompts_says_how_many_and_how(
    client: httpx.Client, db_session: Session
) -> None:
    cut = {"prompts_turns_dropped": 3, "prompts_truncated": 1}
    page = _page_of(
        client,
        db_session,
        {
            "reward_model_summary": {"heldout_accuracy": 0.7, **cut},
            "candidate": {"adapter_uri": "s3://x", "ppo": {"kl": 0.1, **cut}},
            "gate": {"kl": 0.1, "passed": True, "prompts_turns_dropped": 1,
                     "prompts_truncated": 0},
        },
    )  # fmt: skip

    cuts = section(page, 'id="round-prompt-cuts"', "</ul>")
    assert "reward model: 3 prompts lost their oldest turns, 1 was left-truncated" in cuts
    assert "PPO training: 3 prompts lost their oldest turns, 1 was left-truncated" in cuts
    assert "evaluating: 1 prompt lost its oldest turns, 0 were left-truncated" in cuts
    gate = section(page, 'id="round-gate"', "</table>")
    assert "held-out prompts that lost their oldest turns to fit the model" in gate
    assert "prompts_turns_dropped" not in gate


def test_a_round_that_shortened_nothing_says_nothing_of_it(
    client: httpx.Client, db_session: Session
) -> None:
    page = _page_of(
        client,
        db_session,
        {
            "reward_model_summary": {"prompts_turns_dropped": 0, "prompts_truncated": 0},
            "candidate": {"sft": {"prompts_turns_dropped": 0, "prompts_truncated": 0}},
        },
    )

    assert "round-prompt-cuts" not in page
    assert "shortened to fit" not in page
