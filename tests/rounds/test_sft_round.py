"""An SFT round end to end through the plain stage functions (no Celery) on the tiny model:
imported demonstrations → policy → promotion gate → sampling; the new version is registered
with its lineage and its samples reach the annotators' queue."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from app.models import (
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    RoundState,
    Sample,
    TaskSample,
    TrainingRound,
)
from app.projects.demonstration_import import parse_demonstrations
from app.projects.demonstrations import add_demonstrations
from app.rounds import service
from tests.conftest import FreshDatabase
from tests.factories import base_version, make_model_project
from worker.jobs.rounds import run_round

DEMONSTRATIONS = b"\n".join(
    b'{"instruction": "Say something about %s.", "input": "", "output": "Sure: %s is nice."}'
    % (topic, topic)
    for topic in (b"cats", b"dogs", b"rain", b"tea", b"maps", b"bread", b"snow", b"boats")
)


def test_an_sft_round_trains_on_demonstrations_and_registers_a_sampled_version(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    with app_database.session() as session:
        project = make_model_project(session, tiny_model_path, max_new_tokens=8)
        parsed = parse_demonstrations(DEMONSTRATIONS, "alpaca.jsonl")
        assert parsed.errors == []
        add_demonstrations(session, project_id=project.id, demonstrations=parsed.demonstrations)
        training_round = service.start_round(
            session,
            project_id=project.id,
            round_type="sft",
            config={"epochs": 1, "batch_size": 4, "eval_prompts": 2, "max_kl": 1000.0},
            enqueue=False,
        )
        session.commit()
        round_id = training_round.id
        base_id = base_version(session, project).id

    run_round(round_id, "policy")

    with app_database.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.done, ended.error
        assert ended.metrics["candidate"]["sft"]["heldout_loss"] > 0
        assert ended.metrics["gate"]["passed"] is True
        version = session.scalars(
            select(PolicyVersion).where(PolicyVersion.round_id == round_id)
        ).one()
        assert (version.kind, version.status) == (PolicyKind.trained, PolicyStatus.current)
        assert version.parent_id == base_id
        assert version.artifact_uri
        sampled_prompts = session.scalar(
            select(func.count(func.distinct(Sample.prompt_id))).where(
                Sample.policy_version_id == version.id
            )
        )
        assert sampled_prompts == 8  # every prompt (the demonstrations' prompts) was sampled
        tasks_with_new_samples = session.scalar(
            select(func.count(func.distinct(TaskSample.task_id)))
            .join(Sample, Sample.id == TaskSample.sample_id)
            .where(Sample.policy_version_id == version.id)
        )
        assert tasks_with_new_samples == 8
