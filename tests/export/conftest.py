"""A module-wide seeded database for export tests: committed rows, read by the streaming
generator through its own session (the request's session is closed before streaming)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import (
    AnnotatorExclusion,
    ProjectMember,
    Role,
    RoundState,
    SampleFlag,
    TaskSample,
)
from app.projects.service import add_prompts
from app.rounds.snapshots import create_snapshot
from app.tokens import service as tokens
from tests.conftest import FreshDatabase
from tests.export.seed import add_ranking
from tests.factories import (
    base_version,
    make_project,
    make_prompt,
    make_round,
    make_task,
    make_trained_version,
    make_user,
    task_sample_ids,
)

# datasets must never reach the hub (json files load offline)
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    """Ids of what the seed made (project A: plain prompts; project B: a conversation)."""

    project: int
    other_project: int
    conv_project: int
    users: dict[str, int]
    base: int
    v2: int
    round1: int
    other_round: int
    other_version: int
    tasks: dict[str, int]
    samples: dict[str, list[int]]
    flagged: int
    snapshot: int
    other_snapshot: int
    late_ranking: int
    tokens: dict[str, str]


def _seed(session: Session) -> World:
    users = {n: make_user(session, username=n).id for n in ("alice", "bob", "carol", "dave")}
    admin = make_user(session, username="exporter", role=Role.admin)
    project = make_project(session, samples_per_prompt=4, annotations_per_task=2)
    base = base_version(session, project)
    round1 = make_round(session, project, "dpo")
    round1.state = RoundState.done
    v2 = make_trained_version(session, project, base, round_id=round1.id)
    session.add(ProjectMember(project_id=project.id, user_id=users["dave"]))
    session.add(AnnotatorExclusion(project_id=project.id, user_id=users["dave"]))

    t1 = make_task(session, project, texts=["t1 best", "t1 good", "t1 fair", "t1 poor"])
    s1 = task_sample_ids(session, t1)
    add_ranking(session, t1, users["alice"], [[s] for s in s1], created_at=T0)
    bob_order = [s1[0], s1[1], s1[3], s1[2]]
    add_ranking(
        session, t1, users["bob"], [[s] for s in bob_order], created_at=T0 + timedelta(hours=1)
    )

    prompt2 = make_prompt(session, project, "Mixed versions?")
    t2 = make_task(session, project, texts=["old a", "old b"], prompt=prompt2)
    new = make_task(session, project, texts=["new a", "new b"], version=v2, prompt=prompt2)
    s2 = task_sample_ids(session, t2) + task_sample_ids(session, new)
    session.add_all(  # one task showing all four (two per version)
        TaskSample(task_id=t2.id, sample_id=sid, position=i + 2)
        for i, sid in enumerate(task_sample_ids(session, new))
    )
    session.flush()
    old_a, old_b, new_a, new_b = s2
    add_ranking(
        session,
        t2,
        users["alice"],
        [[new_a], [new_b, old_a], [old_b]],
        created_at=T0 + timedelta(days=1),
    )
    add_ranking(
        session,
        t2,
        users["bob"],
        [[old_b], [old_a], [new_b], [new_a]],
        created_at=T0 + timedelta(days=2),
    )

    t3 = make_task(session, project)
    add_ranking(
        session, t3, users["carol"], [], none_usable=True, created_at=T0 + timedelta(days=3)
    )

    t4 = make_task(session, project, texts=["c0", "c1", "c2", "harmful"])
    s4 = task_sample_ids(session, t4)
    session.add(SampleFlag(sample_id=s4[3], user_id=users["carol"], reason="nasty"))
    add_ranking(session, t4, users["carol"], [[s] for s in s4], created_at=T0 + timedelta(days=4))

    t5 = make_task(session, project, texts=["d0", "d1", "d2", "d3"])
    add_ranking(
        session,
        t5,
        users["dave"],
        [[s] for s in task_sample_ids(session, t5)],
        created_at=T0 + timedelta(days=5),
    )
    snapshot = create_snapshot(session, project_id=project.id, name="rm-1")

    t6 = make_task(session, project, texts=["late 0", "late 1", "late 2", "late 3"])
    late = add_ranking(
        session,
        t6,
        users["alice"],
        [[s] for s in task_sample_ids(session, t6)],
        created_at=T0 + timedelta(days=6),
    )

    other = make_project(session)
    other_round = make_round(session, other, "sft")
    other_snapshot = create_snapshot(session, project_id=other.id, name="other")

    conv = make_project(session)
    plain = make_task(session, conv, texts=["p0", "p1", "p2", "p3"])
    add_ranking(session, plain, users["alice"], [[s] for s in task_sample_ids(session, plain)])
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "How are you?"},
    ]
    conv_prompt = add_prompts(session, project_id=conv.id, contents=[messages]).added[0]
    chat = make_task(session, conv, texts=["fine", "good", "ok", "meh"], prompt=conv_prompt)
    add_ranking(session, chat, users["alice"], [[s] for s in task_sample_ids(session, chat)])

    def token(*scopes: str) -> str:
        return tokens.create_token(
            session, name="export", scopes=list(scopes), created_by_id=admin.id
        ).secret

    return World(
        project=project.id,
        other_project=other.id,
        conv_project=conv.id,
        users=users,
        base=base.id,
        v2=v2.id,
        round1=round1.id,
        other_round=other_round.id,
        other_version=base_version(session, other).id,
        tasks={"t1": t1.id, "t2": t2.id, "t3": t3.id, "t4": t4.id, "t5": t5.id, "t6": t6.id},
        samples={"t1": s1, "t2": s2, "t4": s4},
        flagged=s4[3],
        snapshot=snapshot.id,
        other_snapshot=other_snapshot.id,
        late_ranking=late.id,
        tokens={"read": token("read"), "names": token("read", "read:annotators")},
    )


@pytest.fixture(scope="module")
def world(app_database: FreshDatabase) -> World:
    with app_database.session() as session:
        seeded = _seed(session)
        session.commit()
    return seeded


@pytest.fixture(scope="module")
def api(app_database: FreshDatabase) -> Iterator[TestClient]:
    """The app on the module's database, no dependency overrides: the real streaming path."""
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client
