"""Snapshots hold what training may use: no excluded annotators, no flagged samples."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AnnotatorExclusion, ProjectMember, SampleFlag, SnapshotComparison
from app.rounds import snapshots
from tests.factories import make_project, make_ranking, make_task, make_user, task_sample_ids


def test_snapshot_rebuilds_rankings_and_leaves_out_excluded_and_flagged(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    good, excluded = make_user(db_session), make_user(db_session)
    db_session.add_all(
        [
            ProjectMember(project_id=project.id, user_id=good.id),
            ProjectMember(project_id=project.id, user_id=excluded.id),
            AnnotatorExclusion(project_id=project.id, user_id=excluded.id),
        ]
    )
    task = make_task(db_session, project, k=4)
    a, b, c, d = task_sample_ids(db_session, task)
    make_ranking(db_session, task, good, [[a], [b, c], [d]])  # 5 cross pairs + 1 tie
    make_ranking(db_session, task, excluded, [[d], [c], [b], [a]])
    flagged_task = make_task(db_session, project, k=4)
    e, f, g, h = task_sample_ids(db_session, flagged_task)
    make_ranking(db_session, flagged_task, good, [[e], [f], [g], [h]])
    db_session.add(SampleFlag(sample_id=h, user_id=good.id, reason="unsafe"))
    db_session.flush()

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="s1")
    assert snapshot.comparison_count == 6 + 3  # task 1 by `good`; task 2 without pairs with h
    stored = db_session.scalars(
        select(SnapshotComparison.comparison_id).where(
            SnapshotComparison.snapshot_id == snapshot.id
        )
    ).all()
    assert len(stored) == 9

    rebuilt = {r.sample_ids[0]: r for r in snapshots.ranked_responses(db_session, snapshot.id)}
    assert rebuilt[a].sample_ids == [a, b, c, d]
    assert rebuilt[a].groups == [0, 1, 1, 2]
    assert rebuilt[e].sample_ids == [e, f, g]  # the flagged sample is gone
    pairs = snapshots.preference_pairs(db_session, snapshot.id)
    assert len(pairs) == 5 + 3  # the tie is not a preference


def test_reward_model_and_dpo_data_skip_two_samples_of_one_text(db_session: Session) -> None:
    project = make_project(db_session)
    user = make_user(db_session)
    task = make_task(db_session, project, texts=["Paris.", "Lyon.", " paris. ", "Nice."])
    a, b, c, d = task_sample_ids(db_session, task)
    make_ranking(db_session, task, user, [[a], [b], [c], [d]])  # stored before the rule

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="same text")

    (ranking,) = snapshots.ranked_responses(db_session, snapshot.id)
    assert ranking.sample_ids == [a, b, d]  # the repeat is kept once, where it ranks best
    assert ranking.groups == [0, 1, 2]
    pairs = snapshots.preference_pairs(db_session, snapshot.id)
    assert ("Paris.", " paris. ") not in {(chosen, rejected) for _, chosen, rejected in pairs}
    assert len(pairs) == 6 - 1
