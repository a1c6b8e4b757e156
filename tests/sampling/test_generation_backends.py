"""Generation backends: a sampling job whose texts come from an OpenAI-compatible server on
loopback (serving the tiny model) lands the same prompts-to-samples mapping as 'hf' under
the same seed; 5xx and timeouts are retried, then the job fails with one line; the key
stays in the environment. 'vllm' runs only where CUDA and vllm are present."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Project, Sample, SamplingJob
from app.projects.service import add_prompts
from app.sampling import service
from tests.conftest import FreshDatabase
from tests.factories import make_current_version, make_model_project
from tests.sampling.openai_server import ServerState, serve
from worker.generation_backends import openai as openai_backend
from worker.jobs.sampling import run_sampling_job

PROMPTS: list[object] = [
    "What is a good breakfast?",
    "Why is the sky blue?",
    [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "Tell me about cats."},
    ],
]
SEED = 1234
KEY = "sk-test-4f9a1c-never-stored"
KEY_ENV = "RANKLOOP_TEST_GENERATION_KEY"


@pytest.fixture(scope="module")
def server(tiny_model_path: Path) -> Iterator[tuple[str, ServerState]]:
    with serve(tiny_model_path, names=[str(tiny_model_path)], api_key=KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch, server: tuple[str, ServerState]) -> None:
    monkeypatch.setattr(openai_backend, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    monkeypatch.setenv(KEY_ENV, KEY)
    server[1].faults.clear()


def _project(db: FreshDatabase, model: Path, **settings: object) -> int:
    with db.session() as session:
        project = make_model_project(session, model, max_new_tokens=10, **settings)
        add_prompts(session, project_id=project.id, contents=PROMPTS)
        session.commit()
        return project.id


def _openai_project(db: FreshDatabase, model: Path, url: str) -> int:
    return _project(
        db,
        model,
        generation_backend="openai",
        generation_base_url=url,
        generation_api_key_env=KEY_ENV,
    )


def _job(db: FreshDatabase, project_id: int) -> int:
    with db.session() as session:
        job = service.start_sampling(session, project_id=project_id, enqueue=False, seed=SEED)
        assert job is not None
        session.commit()
        return job.id


def _mapping(db: FreshDatabase, project_id: int) -> list[tuple[str, int, int]]:
    """(prompt content, batch seed, row) of every sample: what the seeds decide."""
    with db.session() as session:
        samples = session.scalars(select(Sample).where(Sample.project_id == project_id)).all()
        rows = [(s.prompt_id, s.batch_seed, s.batch_position) for s in samples]
        prompt_ids = sorted({p for p, _, _ in rows})
        order = {p: i for i, p in enumerate(prompt_ids)}  # prompts were added in one order
        return sorted((str(order[p]), b, r) for p, b, r in rows if b is not None and r is not None)


def test_openai_job_lands_the_hf_jobs_prompts_to_samples_mapping(
    app_database: FreshDatabase, tiny_model_path: Path, server: tuple[str, ServerState]
) -> None:
    url, state = server
    hf_project = _project(app_database, tiny_model_path)
    served_project = _openai_project(app_database, tiny_model_path, url)

    hf_tasks = run_sampling_job(_job(app_database, hf_project), prompts_per_chunk=2, batch_size=3)
    served_tasks = run_sampling_job(
        _job(app_database, served_project), prompts_per_chunk=2, batch_size=3
    )

    assert served_tasks == hf_tasks == 3
    mapping = _mapping(app_database, served_project)
    assert len(mapping) == 12
    assert mapping == _mapping(app_database, hf_project)
    assert state.requests, "the server wrote the samples"
    assert all(isinstance(r["prompt"], list) and r["seed"] for r in state.requests)
    assert {r["n"] for r in state.requests} <= {1, 2, 3}


def test_two_server_errors_are_retried_and_the_job_succeeds(
    app_database: FreshDatabase, tiny_model_path: Path, server: tuple[str, ServerState]
) -> None:
    url, state = server
    project_id = _openai_project(app_database, tiny_model_path, url)
    state.faults.extend(["500", "500"])

    created = run_sampling_job(_job(app_database, project_id), prompts_per_chunk=8, batch_size=16)

    assert created == 3
    assert not state.faults


def test_a_timeout_is_retried(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    server: tuple[str, ServerState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, state = server
    monkeypatch.setattr(openai_backend, "REQUEST_TIMEOUT_S", 0.5)
    project_id = _openai_project(app_database, tiny_model_path, url)
    state.faults.append("sleep:1.5")

    created = run_sampling_job(_job(app_database, project_id), prompts_per_chunk=8, batch_size=16)

    assert created == 3


def test_a_server_that_keeps_failing_fails_the_job_with_one_line(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    server: tuple[str, ServerState],
) -> None:
    url, state = server
    project_id = _openai_project(app_database, tiny_model_path, url)
    state.faults.extend(["500"] * 50)
    job_id = _job(app_database, project_id)

    with pytest.raises(openai_backend.BackendUnavailable):
        run_sampling_job(job_id, prompts_per_chunk=8, batch_size=16)

    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.state.value == "failed"
        assert job.error is not None
        assert "\n" not in job.error
        assert f"generation server at {url} failed 4 tries" in job.error
        assert "HTTP 500" in job.error
        assert not session.scalars(select(Sample).where(Sample.project_id == project_id)).all()
    # Three prompts' requests, four tries each; then failed at once, not prompt by prompt.
    assert 50 - len(state.faults) == 3 * 4


def test_the_key_is_sent_but_never_stored_or_logged(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    server: tuple[str, ServerState],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, state = server
    project_id = _openai_project(app_database, tiny_model_path, url)
    state.faults.append("500")  # a retry logs a warning: it must not hold the key

    with caplog.at_level(logging.DEBUG):
        run_sampling_job(_job(app_database, project_id), prompts_per_chunk=8, batch_size=16)

    assert state.headers[-1]["Authorization"] == f"Bearer {KEY}"
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
    with app_database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        stored = [str(getattr(project, c.key)) for c in Project.__table__.columns]
        assert not any(KEY in value for value in stored)
        assert project.generation_api_key_env == KEY_ENV


def test_a_versions_adapter_is_loaded_on_the_server_and_named_per_request(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    server: tuple[str, ServerState],
    tmp_path: Path,
) -> None:
    from peft import LoraConfig, get_peft_model

    from app.artifacts import get_store
    from worker.training.models import load_causal_lm

    url, state = server
    adapter_dir = tmp_path / "adapter"
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], task_type="CAUSAL_LM")
    get_peft_model(load_causal_lm(str(tiny_model_path)), lora).save_pretrained(adapter_dir)
    project_id = _openai_project(app_database, tiny_model_path, url)
    with app_database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        uri = get_store().put_dir(adapter_dir, f"tests/backends/{project_id}/adapter")
        _, version = make_current_version(session, project, artifact_uri=uri)
        name = f"rankloop-v{version.number}"
        session.commit()
    state.requests.clear()

    assert run_sampling_job(_job(app_database, project_id)) == 3

    assert name in state.names
    # The new version by its adapter; tasks that mix in the previous (base) version, by name.
    models = {r["model"] for r in state.requests}
    assert name in models
    assert models <= {name, str(tiny_model_path)}


def test_a_missing_key_variable_fails_the_job_naming_it(
    app_database: FreshDatabase,
    tiny_model_path: Path,
    server: tuple[str, ServerState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV)
    project_id = _openai_project(app_database, tiny_model_path, server[0])
    job_id = _job(app_database, project_id)

    with pytest.raises(openai_backend.BackendUnavailable):
        run_sampling_job(job_id)

    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.error is not None
        assert KEY_ENV in job.error


def test_vllm_on_a_worker_without_cuda_fails_the_job_saying_so(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this worker has CUDA")
    project_id = _project(app_database, tiny_model_path, generation_backend="vllm")
    job_id = _job(app_database, project_id)

    with pytest.raises(openai_backend.BackendUnavailable):
        run_sampling_job(job_id)

    with app_database.session() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        assert job.state.value == "failed"
        assert "'vllm', which runs on CUDA only" in (job.error or "")


def test_vllm_in_process_keeps_the_mapping(
    app_database: FreshDatabase, tiny_model_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("the 'vllm' backend runs on CUDA only")
    pytest.importorskip("vllm")
    hf_project = _project(app_database, tiny_model_path)
    vllm_project = _project(app_database, tiny_model_path, generation_backend="vllm")

    run_sampling_job(_job(app_database, hf_project), prompts_per_chunk=2, batch_size=3)
    run_sampling_job(_job(app_database, vllm_project), prompts_per_chunk=2, batch_size=3)

    assert _mapping(app_database, vllm_project) == _mapping(app_database, hf_project)


def test_the_served_model_follows_the_version() -> None:
    from dataclasses import replace

    from worker.generation_backends import BackendConfig, BackendUnavailable, VersionRef
    from worker.generation_backends.openai import served_name

    config = BackendConfig(kind="openai", base_url="http://vllm:8000/v1")
    base = VersionRef(id=1, number=1, base_model="org/base")
    trained = VersionRef(id=2, number=2, base_model="org/base", adapter_uri="file:///a")
    from_sft = replace(trained, merged_adapter_uris=("file:///sft",))
    merged = replace(config, model="org/merged")

    assert served_name(config, base, ["org/base"]) == "org/base"
    assert served_name(config, trained, ["org/base", "rankloop-v2"]) == "rankloop-v2"
    assert served_name(merged, trained, ["org/merged"]) == "org/merged"
    assert served_name(merged, from_sft, ["org/merged", "rankloop-v2"]) == "org/merged"
    with pytest.raises(BackendUnavailable, match="rankloop-v2"):
        served_name(config, trained, ["org/base"])
    with pytest.raises(BackendUnavailable, match="merged adapters"):
        served_name(config, from_sft, ["org/base", "rankloop-v2"])
