"""`rankloop simulate` against a real server: every task ranked, over the browser's endpoints."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import func, select

from app.models import ProjectMember, Ranking, RankingTask, Sample, User
from app.simulation.preferences import keyword
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_task

TEXTS = [
    "No.",
    "Please, please try it, please.",
    "Please try.",
    "Try it, please, and please again.",
]


def _simulate(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rankloop.cli", "simulate", "--url", server.url, *args],
        env={**server.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_simulate_ranks_every_task_of_the_project(
    fresh_database: FreshDatabase, live_server: LiveServer
) -> None:
    with fresh_database.session() as session:
        project = make_project(session, annotations_per_task=2, samples_per_prompt=4)
        other = make_project(session)  # its tasks must stay untouched
        tasks = [make_task(session, project, texts=TEXTS) for _ in range(7)]
        make_task(session, other)
        session.commit()
        project_id, task_ids = project.id, [t.id for t in tasks]

    done = _simulate(
        live_server,
        "--project",
        str(project_id),
        "--annotators",
        "3",
        "--preference",
        "keyword:please",
        "--noise",
        "0",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Submitted 14 rankings" in done.stdout

    with fresh_database.session() as session:
        closed = session.scalars(select(RankingTask).where(RankingTask.id.in_(task_ids))).all()
        assert all(t.annotations_done == 2 for t in closed)
        rankings = session.scalars(select(Ranking).where(Ranking.project_id == project_id)).all()
        assert len(rankings) == 14
        assert len({(r.task_id, r.user_id) for r in rankings}) == 14
        assert len({r.user_id for r in rankings}) >= 2
        assert session.scalar(select(func.count()).select_from(Ranking)) == 14  # not `other`
        # Noise 0: each ranking orders the samples by their count of "please".
        score = keyword("please")
        for ranking in rankings:
            order = [sid for group in ranking.groups for sid in group]
            texts = {
                s.id: s.text for s in session.scalars(select(Sample).where(Sample.id.in_(order)))
            }
            scores = [score(texts[sid]) for sid in order]
            assert scores == sorted(scores, reverse=True)
            assert scores[0] == 3.0


def test_simulate_with_an_unknown_preference_fails_clearly_and_creates_no_one(
    fresh_database: FreshDatabase, live_server: LiveServer
) -> None:
    with fresh_database.session() as session:
        project = make_project(session)
        session.commit()
        project_id = project.id

    failed = _simulate(
        live_server, "--project", str(project_id), "--annotators", "2", "--preference", "tone"
    )
    assert failed.returncode == 1
    assert "Unknown preference 'tone'" in failed.stdout
    with fresh_database.session() as session:
        members = session.scalar(select(func.count()).where(ProjectMember.project_id == project_id))
        assert members == 0
        created = select(func.count()).where(User.username.like(f"sim-p{project_id}-%"))
        assert session.scalar(created) == 0


def test_simulate_stops_at_max_tasks(
    fresh_database: FreshDatabase, live_server: LiveServer
) -> None:
    with fresh_database.session() as session:
        project = make_project(session)
        for _ in range(5):
            make_task(session, project)
        session.commit()
        project_id = project.id

    done = _simulate(
        live_server, "--project", str(project_id), "--annotators", "2", "--max-tasks", "3"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with fresh_database.session() as session:
        stored = select(func.count()).where(Ranking.project_id == project_id)
        assert session.scalar(stored) == 3


def test_simulate_with_a_mixed_crowd_has_its_reversed_annotator_rank_upside_down(
    fresh_database: FreshDatabase, live_server: LiveServer
) -> None:
    with fresh_database.session() as session:
        project = make_project(session, annotations_per_task=10, samples_per_prompt=4)
        for _ in range(2):
            make_task(session, project, texts=TEXTS)
        session.commit()
        project_id = project.id

    done = _simulate(
        live_server,
        "--project",
        str(project_id),
        "--annotators",
        "10",
        "--preference",
        "keyword:please",
        "--noise",
        "0",
        "--crowd",
        "mixed",
        "--seed",
        "3",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Submitted 20 rankings" in done.stdout
    reversed_lines = [line for line in done.stdout.splitlines() if "(reversed)" in line]
    assert len(reversed_lines) == 1
    reversed_name = reversed_lines[0].split(":")[0].strip()

    score = keyword("please")
    with fresh_database.session() as session:
        rows = session.execute(
            select(User.username, Ranking)
            .join(Ranking, Ranking.user_id == User.id)
            .where(Ranking.project_id == project_id)
        ).all()
        assert len(rows) == 20
        for username, ranking in rows:
            order = [sid for group in ranking.groups for sid in group]
            texts = {
                s.id: s.text for s in session.scalars(select(Sample).where(Sample.id.in_(order)))
            }
            scores = [score(texts[sid]) for sid in order]
            # Noise 0 (and 3 × 0): the others rank by the preference, the reversed one against it.
            expected = sorted(scores) if username == reversed_name else sorted(scores, reverse=True)
            assert scores == expected, username
