"""Snapshots hold what training may use: no excluded annotators, no flagged samples, and each
comparison's reliability weight as it was when the snapshot was taken."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    AnnotatorExclusion,
    AnnotatorReliability,
    Comparison,
    Project,
    ProjectMember,
    SampleFlag,
    SnapshotComparison,
)
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


def _reliability(project_id: int, user_id: int, weight: float) -> AnnotatorReliability:
    return AnnotatorReliability(
        project_id=project_id,
        user_id=user_id,
        reliability=0.5,
        lower=0.3,
        upper=0.7,
        shared_tasks=20,
        weight=weight,
    )


def _two_annotators_ranked(db_session: Session, project: Project) -> tuple[int, int, int]:
    """A task ranked by a trusted annotator and by a reversed one, and another task ranked by
    an annotator with no reliability row yet: the (trusted, reversed, unfitted) user ids."""
    trusted, reversed_, unfitted = (make_user(db_session) for _ in range(3))
    task = make_task(db_session, project, k=3)
    a, b, c = task_sample_ids(db_session, task)
    make_ranking(db_session, task, trusted, [[a], [b], [c]])
    make_ranking(db_session, task, reversed_, [[c], [b], [a]])
    other = make_task(db_session, project, k=2)
    d, e = task_sample_ids(db_session, other)
    make_ranking(db_session, other, unfitted, [[d], [e]])
    db_session.add_all(
        [_reliability(project.id, trusted.id, 0.9), _reliability(project.id, reversed_.id, 0.0)]
    )
    db_session.flush()
    return trusted.id, reversed_.id, unfitted.id


def _weights_by_user(db_session: Session, snapshot_id: int) -> dict[int, set[float]]:
    rows = db_session.execute(
        select(Comparison.user_id, SnapshotComparison.weight)
        .join(SnapshotComparison, SnapshotComparison.comparison_id == Comparison.id)
        .where(SnapshotComparison.snapshot_id == snapshot_id)
    ).all()
    out: dict[int, set[float]] = {}
    for user_id, weight in rows:
        out.setdefault(user_id, set()).add(weight)
    return out


def test_snapshot_weighs_each_comparison_by_its_annotators_reliability(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    project.reliability_weighting = True
    trusted, reversed_, unfitted = _two_annotators_ranked(db_session, project)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="weighted")

    assert snapshot.criteria["reliability_weights"] == "applied"
    assert _weights_by_user(db_session, snapshot.id) == {
        trusted: {0.9},
        reversed_: {0.0},
        unfitted: {1.0},  # not fitted yet: counts fully, never silently left out
    }
    rankings = snapshots.ranked_responses(db_session, snapshot.id)
    assert sorted(r.weight for r in rankings) == [0.0, 0.9, 1.0]
    pairs = snapshots.weighted_preference_pairs(db_session, snapshot.id)
    assert sorted(p.weight for p in pairs) == [0.0] * 3 + [0.9] * 3 + [1.0]
    assert [p[:3] for p in pairs] == snapshots.preference_pairs(db_session, snapshot.id)


def test_snapshot_weights_are_one_when_the_project_does_not_weight(db_session: Session) -> None:
    project = make_project(db_session)
    project.reliability_weighting = False
    _two_annotators_ranked(db_session, project)

    snapshot = snapshots.create_snapshot(db_session, project_id=project.id, name="plain")

    assert snapshot.criteria["reliability_weights"] == "off"
    assert set().union(*_weights_by_user(db_session, snapshot.id).values()) == {1.0}
    assert {r.weight for r in snapshots.ranked_responses(db_session, snapshot.id)} == {1.0}


def test_a_refit_changes_new_snapshots_but_not_an_earlier_one(db_session: Session) -> None:
    project = make_project(db_session)
    project.reliability_weighting = True
    trusted, reversed_, _ = _two_annotators_ranked(db_session, project)
    before = snapshots.create_snapshot(db_session, project_id=project.id, name="before")

    refit = db_session.get(AnnotatorReliability, (project.id, reversed_))
    assert refit is not None
    refit.weight = 0.5
    db_session.flush()
    after = snapshots.create_snapshot(db_session, project_id=project.id, name="after")

    db_session.expire_all()
    assert _weights_by_user(db_session, before.id)[reversed_] == {0.0}
    assert _weights_by_user(db_session, after.id)[reversed_] == {0.5}
    assert _weights_by_user(db_session, after.id)[trusted] == {0.9}
