"""The recipe the SFT/DPO issue promises, end to end on the tiny model through the plain stage
functions (no Celery): demonstrations → SFT round → DPO round on the rankings. Each round
registers a version whose parent is the one before it, and both versions' samples reach the
annotators' queue."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from app.models import (
    PolicyStatus,
    PolicyVersion,
    Project,
    RoundState,
    Sample,
    TaskSample,
    TrainingRound,
)
from app.projects.demonstration_import import parse_demonstrations
from app.projects.demonstrations import add_demonstrations
from app.rounds import service
from tests.conftest import FreshDatabase
from tests.factories import base_version, make_ranking, make_task, make_user, task_sample_ids
from tests.rounds.seed import seed_ranked_project
from worker.jobs.rounds import run_round

PROMPTS = 12


def _run(db: FreshDatabase, project_id: int, round_type: str, config: dict[str, object]) -> int:
    with db.session() as session:
        training_round = service.start_round(
            session, project_id=project_id, round_type=round_type, config=config, enqueue=False
        )
        session.commit()
        round_id = training_round.id
    run_round(round_id, "policy")
    with db.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.done, ended.error
        return round_id


def _version_of(db: FreshDatabase, round_id: int) -> PolicyVersion:
    with db.session() as session:
        return session.scalars(
            select(PolicyVersion).where(PolicyVersion.round_id == round_id)
        ).one()


def _tasks_showing(db: FreshDatabase, version_id: int) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count(func.distinct(TaskSample.task_id)))
                .join(Sample, Sample.id == TaskSample.sample_id)
                .where(Sample.policy_version_id == version_id)
            )
            or 0
        )


def test_sft_then_dpo_rounds_register_a_lineage_whose_samples_reach_annotators(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path, prompts=PROMPTS)
        lines = b"\n".join(
            b'{"prompt": "Tell me about topic %d.", "response": "good good answer %d"}' % (i, i)
            for i in range(PROMPTS)
        )
        parsed = parse_demonstrations(lines, "plain.jsonl")
        assert parsed.errors == []
        add_demonstrations(session, project_id=project_id, demonstrations=parsed.demonstrations)
        # A duplicate generation ranked apart from its twin: a pair with no preference in it.
        project = session.get_one(Project, project_id)
        twins = make_task(session, project, texts=["same words", "same words", "x", "good y"])
        a, b, c, d = task_sample_ids(session, twins)
        make_ranking(session, twins, make_user(session), [[d], [a], [b], [c]])
        session.commit()
        base_id = base_version(session, session.get_one(Project, project_id)).id

    sft_round = _run(
        app_database,
        project_id,
        "sft",
        {"epochs": 1, "batch_size": 4, "eval_prompts": 2, "max_kl": 1000.0},
    )
    sft = _version_of(app_database, sft_round)
    assert sft.parent_id == base_id

    dpo_round = _run(
        app_database,
        project_id,
        "dpo",
        {
            "epochs": 2,
            "batch_size": 4,
            "eval_prompts": 2,
            "max_kl": 1000.0,
            "min_heldout_accuracy": 0.0,
            "min_accuracy_low": 0.0,
            "min_score_gain": -1000.0,
        },
    )
    dpo = _version_of(app_database, dpo_round)
    with app_database.session() as session:
        ended = session.get_one(TrainingRound, dpo_round)
        assert ended.snapshot_id is not None  # the pairs it trained on are on record
        assert "dpo" in ended.metrics["candidate"]
        # The twins' ranking stored no pair between them, so DPO had none to skip.
        assert ended.metrics["candidate"]["identical_pairs_skipped"] == 0
        assert session.get_one(PolicyVersion, sft.id).status == PolicyStatus.retired
    assert dpo.parent_id == sft.id
    assert dpo.status == PolicyStatus.current
    assert _tasks_showing(app_database, sft.id) > 0
    assert _tasks_showing(app_database, dpo.id) > 0
