"""Seeded projects for the ratings service, page and job tests: tasks that mix two versions,
and rankings written through the real pair derivation (tests/factories.make_ranking)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    PolicyKind,
    PolicyVersion,
    Project,
    RankingTask,
    RoundType,
    TrainingRound,
    User,
)
from app.projects import service as projects
from app.ratings import service as ratings
from tests.factories import make_prompt, make_ranking, make_samples, make_version, task_of


def mixed_task(
    session: Session, project: Project, versions: Sequence[PolicyVersion], per_version: int = 2
) -> tuple[RankingTask, dict[int, list[int]]]:
    """A task over one prompt with `per_version` samples of each version:
    (task, {version id: sample ids})."""
    prompt = make_prompt(session, project)
    by_version = {
        version.id: make_samples(
            session, prompt, version, [f"v{version.number} answer {i}" for i in range(per_version)]
        )
        for version in versions
    }
    task = task_of(
        session, project, prompt, [s for samples in by_version.values() for s in samples]
    )
    return task, {v: [s.id for s in samples] for v, samples in by_version.items()}


Ranker = Callable[[dict[int, list[int]]], list[list[int]]]


def prefer(first: PolicyVersion, then: PolicyVersion) -> Ranker:
    """Every sample of `first` above every sample of `then` (samples of one version tied)."""
    return lambda samples: [samples[first.id], samples[then.id]]


def mostly(first: PolicyVersion, then: PolicyVersion, every: int = 5) -> Ranker:
    """Like prefer(first, then), except that every `every`-th ranking is the other way round."""
    calls = itertools.count(1)

    def rank(samples: dict[int, list[int]]) -> list[list[int]]:
        if next(calls) % every == 0:
            return [samples[then.id], samples[first.id]]
        return [samples[first.id], samples[then.id]]

    return rank


def seed_rankings(
    session: Session,
    project: Project,
    versions: Sequence[PolicyVersion],
    annotators: Sequence[User],
    *,
    tasks: int,
    rank: Ranker,
) -> list[RankingTask]:
    """`tasks` mixed tasks, each ranked by every annotator with `rank`."""
    made = []
    for _ in range(tasks):
        task, samples = mixed_task(session, project, versions)
        for user in annotators:
            make_ranking(session, task, user, rank(samples))
        made.append(task)
    return made


def two_versions(session: Session, project: Project) -> tuple[PolicyVersion, PolicyVersion]:
    """The base version and a version trained from it."""
    from tests.factories import base_version

    base = base_version(session, project)
    return base, make_version(
        session, project, parent_id=base.id, name="trained", kind=PolicyKind.trained
    )


def add_members(session: Session, project: Project, *users: User) -> None:
    for user in users:
        projects.add_member(session, project_id=project.id, user_id=user.id)


@dataclass
class Flagged:
    project: Project
    base: PolicyVersion
    new: PolicyVersion


def flagged_project(session: Session) -> Flagged:
    """A project whose current version v2 (trained from v1) annotators rate worse than v1, with
    the fit stored (v2's human_verdict is "worse") and the rows committed."""
    from tests.factories import make_current_version, make_project, make_user

    project = make_project(session, annotations_per_task=2)
    base, new = make_current_version(session, project, name="round 1 (reward_ppo)")
    annotators = [make_user(session), make_user(session)]
    add_members(session, project, *annotators)
    seed_rankings(session, project, [base, new], annotators, tasks=15, rank=prefer(base, new))
    ratings.recompute(session, project_id=project.id)
    session.commit()
    session.refresh(new)
    assert new.human_verdict == "worse"
    return Flagged(project, base, new)


# Logged-in admin clients for the page tests (shared with tests/admin).
from tests.admin.conftest import LoggedIn, admin, cheap_password_hashing  # noqa: E402, F401
from tests.api.conftest import make_token  # noqa: E402, F401


def versions_by_number(session: Session, project: Project) -> dict[int, PolicyVersion]:
    """The project's versions as stored now (the session's cache expired first)."""
    session.expire_all()
    rows = session.scalars(select(PolicyVersion).where(PolicyVersion.project_id == project.id))
    return {v.number: v for v in rows}


def start_active_round(session: Session, project: Project) -> None:
    """A round that is still queued: the project has an active round."""
    session.add(TrainingRound(project_id=project.id, number=1, type=RoundType.dpo))
    session.flush()
