"""What a project's first tasks wait for, said the same way on its pages and the demo's console.

Two sources and no schema: the tiny model's build writes a small JSON file beside the model
(`<data_dir>/models/tiny.status.json`, steps done of total, or why it failed; the worker
writes it, see worker/policies.ensure_tiny_model); sampling is read from the project's queued
or running sampling job (prompts_done of prompts_total).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.models import JobState, Project, SamplingJob
from app.sampling import repository as sampling_repository

TINY = "tiny"  # worker.policies.TINY: the base model the workers build themselves


@dataclass(frozen=True)
class Preparing:
    """One thing in progress before tasks can be ranked."""

    what: str
    """"model" (the tiny model is being built), "sampling" or "failed" (the build failed)."""
    message: str
    """e.g. "preparing: building the tiny model…", without the counts."""
    done: int | None = None
    total: int | None = None
    unit: str = ""
    """What the counts count ("steps"), shown after them."""

    @property
    def line(self) -> str:
        if self.total:
            unit = f" {self.unit}" if self.unit else ""
            return f"{self.message} ({self.done or 0}/{self.total}{unit})"
        return self.message


# The tiny model's build ----------------------------------------------------------------------


def model_status_path(model_dir: Path) -> Path:
    return model_dir.with_name(model_dir.name + ".status.json")


def write_model_status(
    model_dir: Path, *, done: int = 0, total: int = 0, error: str | None = None
) -> None:
    """Replace the build's status file in one step (readers never see half of it)."""
    path = model_status_path(model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    status = {"done": done, "total": total, "error": error, "updated_at": time.time()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def clear_model_status(model_dir: Path) -> None:
    model_status_path(model_dir).unlink(missing_ok=True)


def model_build(model_dir: Path, *, stale_after: float | None = None) -> Preparing | None:
    """The build in progress (or failed) for `model_dir`; None once the model is there, or when
    the builder went silent for longer than the heartbeat timeout (its worker died)."""
    if (model_dir / "config.json").exists():
        return None
    try:
        status: dict[str, Any] = json.loads(model_status_path(model_dir).read_text())
    except (OSError, ValueError):
        return None
    if status.get("error"):
        return Preparing(
            "failed", f"the tiny model could not be built: {status['error']} (see the worker log)"
        )
    stale_after = stale_after or get_settings().heartbeat_timeout_seconds
    if time.time() - float(status.get("updated_at", 0)) > stale_after:
        return None
    total = int(status.get("total") or 0)
    return Preparing(
        "model",
        "preparing: building the tiny model…",
        done=int(status.get("done") or 0) if total else None,
        total=total or None,
        unit="steps",
    )


# Sampling ------------------------------------------------------------------------------------


def sampling(job: SamplingJob) -> Preparing:
    prompts = f"{job.prompts_total} prompt{'' if job.prompts_total == 1 else 's'}"
    if job.state == JobState.queued:
        return Preparing("sampling", f"preparing: sampling {prompts}… (waiting for a worker)")
    return Preparing(
        "sampling",
        f"preparing: sampling {prompts}…",
        done=job.prompts_done,
        total=job.prompts_total,
    )


def live_job(job: SamplingJob) -> bool:
    """Queued, or running with a fresh heartbeat (a silent one lost its worker)."""
    if job.state == JobState.queued:
        return True
    if job.state != JobState.running:
        return False
    beat = job.heartbeat_at or job.started_at or job.created_at
    return (utcnow() - beat).total_seconds() < get_settings().heartbeat_timeout_seconds


def base_model_build(project: Project) -> Preparing | None:
    """The tiny model's build when the project uses it and it is not built yet."""
    return model_build(get_settings().tiny_model_dir) if project.base_model == TINY else None


def preparing(session: Session, project: Project) -> Preparing | None:
    """The tiny model's build when the project uses it and it is not built yet, else the
    project's live sampling job (a running one before those queued, oldest first); None when
    nothing is being prepared."""
    build = base_model_build(project)
    if build is not None:
        return build
    jobs = sampling_repository.active_sampling_jobs(session, project.id)
    for job in sorted(jobs, key=lambda j: (j.state != JobState.running, j.id)):
        if live_job(job):
            return sampling(job)
    return None
