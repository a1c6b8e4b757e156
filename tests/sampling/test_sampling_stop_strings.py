"""Samples stored for annotators end where the answer ends: at the stop strings the chat
template implies, or at the project's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Project, Sample
from app.projects.service import add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase
from tests.factories import make_project
from worker.jobs.sampling import run_sampling_job

PROMPTS = [
    "What is a good breakfast?",
    "Why is the sky blue?",
    "How do I make a cup of tea?",
    "Tell me about cats.",
    "What does a good morning routine look like?",
    "How often should I water a cactus?",
]
DERIVED = ["\nUser:", "\nAssistant:"]


def _sampled_project(
    database: FreshDatabase, model: Path, name: str, stop_strings: list[str] | None
) -> int:
    with database.session() as session:
        project = make_project(
            session,
            name=name,
            base_model=str(model),
            samples_per_prompt=4,
            max_new_tokens=48,
            temperature=1.0,
            top_p=1.0,
            stop_strings=stop_strings,
        )
        add_prompts(session, project_id=project.id, contents=PROMPTS)
        job = service.start_sampling(session, project_id=project.id, enqueue=False, seed=11)
        assert job is not None
        session.commit()
        project_id, job_id = project.id, job.id
    run_sampling_job(job_id, batch_size=8)
    return project_id


def _samples(database: FreshDatabase, project_id: int) -> list[Sample]:
    with database.session() as session:
        return list(session.scalars(select(Sample).where(Sample.project_id == project_id)))


@pytest.fixture(scope="module")
def dialogue_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained long enough to write dialogue lines (the 30-step model writes word salad)."""
    from worker.training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("dialogue-model"), steps=100, seed=0)


@pytest.fixture(scope="module")
def derived(app_database: FreshDatabase, dialogue_model: Path) -> int:
    return _sampled_project(app_database, dialogue_model, "derived stops", None)


def test_no_stored_sample_runs_on_into_an_invented_turn(
    app_database: FreshDatabase, derived: int
) -> None:
    samples = _samples(app_database, derived)

    assert len(samples) == 4 * len(PROMPTS)
    assert not [s.text for s in samples if any(stop in s.text for stop in DERIVED)]


def test_the_same_prompts_and_settings_run_on_without_stop_strings(
    dialogue_model: Path,
) -> None:
    """What the test above guards against does happen with this model (not a vacuous test)."""
    from worker.training.generation import GenerationSettings, generate_samples
    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(dialogue_model))
    model = load_causal_lm(str(dialogue_model), device="cpu")
    ensure_pad_token(tokenizer, model)
    settings = GenerationSettings(max_new_tokens=48, temperature=1.0, stop_strings=[])

    groups = generate_samples(
        model, tokenizer, PROMPTS, n_per_prompt=4, settings=settings, seed=11, batch_size=8
    )

    assert [s.text for g in groups for s in g if any(stop in s.text for stop in DERIVED)]


def test_the_projects_own_stop_strings_replace_the_derived_ones(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    project_id = _sampled_project(app_database, tiny_model_path, "own stops", ["e", "\n"])

    texts = [s.text for s in _samples(app_database, project_id)]
    with app_database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        assert project.stop_strings == ["e", "\n"]

    assert texts
    assert not [t for t in texts if "e" in t or "\n" in t]
