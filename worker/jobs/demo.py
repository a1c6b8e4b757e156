"""The demo's slow preparation, run by the worker while the web pages are already up."""

from __future__ import annotations

from app.db import session_scope
from app.demo import start_demo_sampling
from worker.jobs.sampling import run_sampling_job
from worker.policies import ensure_tiny_model

PROMPTS_PER_CHUNK = 4
"""Tasks open four prompts at a time (one generation batch of 4 x 4 samples), so the first
are ready sooner and the pages count the job's progress in steps of four."""


def prepare_demo_samples(project_id: int, *, job_id: int | None = None) -> int:
    """Build the tiny model if missing, then run the demo's sampling job (`rankloop demo`
    queues it; one is started here when it did not)."""
    ensure_tiny_model()
    if job_id is None:
        with session_scope() as session:
            job_id = start_demo_sampling(session, project_id)
    if job_id is None:
        return 0
    return run_sampling_job(job_id, prompts_per_chunk=PROMPTS_PER_CHUNK)
