"""The demo's slow preparation, run by the worker while the web pages are already up."""

from __future__ import annotations

from app.db import session_scope
from app.sampling import service
from worker.jobs.sampling import run_sampling_job
from worker.policies import ensure_tiny_model


def prepare_demo_samples(project_id: int, *, prompts: int = 12) -> int:
    ensure_tiny_model()
    with session_scope() as session:
        job = service.start_sampling(
            session, project_id=project_id, prompt_limit=prompts, enqueue=False
        )
        job_id = job.id if job is not None else None
    return run_sampling_job(job_id) if job_id is not None else 0
