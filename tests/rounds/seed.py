"""A project on the tiny model whose rankings follow a rule a reward model can learn."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.projects.service import add_prompts
from tests.conftest import FreshDatabase
from tests.factories import make_model_project, make_ranking, make_task, make_user, task_sample_ids


def seed_ranked_project(session: Session, tiny_model_path: Path, *, prompts: int = 12) -> int:
    """`prompts` prompts, each with a 4-sample task of the base version ranked by how often
    the sample says 'good' (best first, no ties). Returns the project id; the caller commits."""
    project = make_model_project(session, tiny_model_path, max_new_tokens=6)
    annotator = make_user(session)
    added = add_prompts(
        session,
        project_id=project.id,
        contents=[f"Tell me about topic {i}." for i in range(prompts)],
    ).added
    for i, prompt in enumerate(added):
        texts = [("good " * n + f"answer {i}").strip() for n in (0, 1, 2, 3)]
        task = make_task(session, project, texts=texts, prompt=prompt)
        ids = task_sample_ids(session, task)  # same order as texts: 0..3 'good's
        make_ranking(session, task, annotator, [[sid] for sid in reversed(ids)])
    return project.id


def commit_ranked_project(db: FreshDatabase, tiny_model_path: Path, *, prompts: int = 12) -> int:
    """seed_ranked_project in a transaction of its own, committed: the project id."""
    with db.session() as session:
        project_id = seed_ranked_project(session, tiny_model_path, prompts=prompts)
        session.commit()
        return project_id
