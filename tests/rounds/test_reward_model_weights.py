"""The reward-model stage trains on the snapshot's reliability weights: an annotator the
reliability fit weighs 0 (here one who reverses every ranking) trains nothing."""

from __future__ import annotations

from pathlib import Path

from app.models import AnnotatorReliability, ComparisonSnapshot, Project, RankingTask
from tests.conftest import FreshDatabase
from tests.factories import make_ranking, make_user, task_sample_ids
from tests.rounds.seed import seed_ranked_project
from worker.jobs.reward_model import train_project_reward_model


def _with_a_reversed_annotator(db: FreshDatabase, tiny_model_path: Path, *, weight: float) -> int:
    """The seeded project (8 rankings), each task ranked again in reverse by an annotator whose
    fitted reliability weight is `weight`; committed. Returns the project id."""
    from sqlalchemy import select

    with db.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path, prompts=8)
        project = session.get(Project, project_id)
        assert project is not None
        project.reliability_weighting = True
        adversary = make_user(session)
        tasks = session.scalars(select(RankingTask).where(RankingTask.project_id == project_id))
        for task in tasks.all():
            ids = task_sample_ids(session, task)  # 0..3 'good's: the seed ranks reversed(ids)
            make_ranking(session, task, adversary, [[sid] for sid in ids])
        session.add(
            AnnotatorReliability(
                project_id=project_id,
                user_id=adversary.id,
                reliability=0.05,
                lower=0.0,
                upper=0.15,
                shared_tasks=8,
                weight=weight,
            )
        )
        session.commit()
        return project_id


def test_the_reward_model_stage_trains_on_the_snapshots_weights(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id = _with_a_reversed_annotator(app_database, tiny_model_path, weight=0.0)

    run = train_project_reward_model(
        project_id, {"epochs": 1, "max_length": 64, "heldout_fraction": 0.25}, register=False
    )

    metrics = run.summary
    assert metrics["n_train"] == 2 * 6  # 6 of the 8 prompts, each ranked twice
    assert metrics["n_train_weight_zero"] == 6  # the adversary's: in the data, weighing 0
    assert metrics["heldout_accuracy"] == 0.5  # each held-out pair and its reverse
    with app_database.session() as session:
        snapshot = session.get(ComparisonSnapshot, run.snapshot_id)
        assert snapshot is not None
        assert snapshot.criteria["reliability_weights"] == "applied"
