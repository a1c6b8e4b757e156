"""`rankloop demo`: a working RankLoop on a laptop, with no Postgres, Redis or GPU."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app import preparation
from app.accounts import repository as accounts_repo
from app.accounts import service as accounts
from app.config import Settings
from app.db import session_scope
from app.models import JobState, Project, Role, SamplingJob, User
from app.projects import repository as projects_repo
from app.projects import service as projects
from app.sampling import repository as sampling_repo
from app.sampling import service as sampling
from app.security import generate_password, hash_password

DEMO_PROJECT = "Demo: friendly assistant"
DEMO_PROMPTS = Path(__file__).resolve().parent / "data" / "demo_prompts.jsonl"
DEMO_GUIDELINES = """\
Rank the answers **best first**.

- Prefer answers that respond to the prompt, are polite, and read well.
- Drag a card (or press its number key, then use the arrow keys) to reorder.
- Tie two answers when you cannot tell them apart.
- Flag anything harmful; use *none usable* when every answer is unusable.
"""
DEMO_SAMPLED_PROMPTS = 12
"""Prompts the demo samples before it is ready: 12 tasks to rank, in a minute or two on a CPU."""


@dataclass(frozen=True)
class DemoAccounts:
    admin_password: str
    annotator_password: str
    project_id: int


def load_demo_prompts() -> list[str]:
    lines = DEMO_PROMPTS.read_text().splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]


def _user_with_new_password(session: Session, username: str, role: Role) -> tuple[User, str]:
    """Create the demo user, or give an existing one a fresh password (printed once)."""
    password = generate_password()
    user = accounts_repo.get_user_by_username(session, username)
    if user is None:
        user = accounts.create_user(session, username=username, password=password, role=role)
    else:
        user.password_hash = hash_password(password)
        user.active = True
    return user, password


def prepare_demo(session: Session, settings: Settings) -> DemoAccounts:
    """Users, a project and its prompts; the model and samples are prepared by the worker."""
    admin, admin_password = _user_with_new_password(session, "admin", Role.admin)
    annotator, annotator_password = _user_with_new_password(session, "annotator", Role.annotator)
    project: Project | None = projects_repo.get_project_by_name(session, DEMO_PROJECT)
    if project is None:
        project = projects.create_project(
            session,
            name=DEMO_PROJECT,
            base_model=settings.default_base_model,
            samples_per_prompt=4,
            annotations_per_task=1,
            max_new_tokens=48,
            guidelines=DEMO_GUIDELINES,
            description="A tiny local model learns to answer politely from your rankings.",
        )
    projects.add_member(session, project_id=project.id, user_id=annotator.id)
    projects.add_member(session, project_id=project.id, user_id=admin.id)
    projects.add_prompts(session, project_id=project.id, contents=load_demo_prompts())
    return DemoAccounts(admin_password, annotator_password, project.id)


def start_demo_sampling(session: Session, project_id: int) -> int | None:
    """The demo's first sampling job, queued now so the pages and the console can follow it
    from the start (the worker builds the tiny model first, then runs it); None when every
    prompt is being sampled already. A job an earlier run queued and never ran (stopped while
    the model was built) is the one: running it again is safe."""
    jobs = sampling_repo.active_sampling_jobs(session, project_id)
    for queued in sorted(jobs, key=lambda j: j.id):
        if queued.state == JobState.queued and queued.round_id is None:
            return queued.id
    job = sampling.start_sampling(
        session, project_id=project_id, prompt_limit=DEMO_SAMPLED_PROMPTS, enqueue=False
    )
    return job.id if job is not None else None


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def follow_preparation(
    project_id: int,
    job_id: int | None,
    say: Callable[[str], None],
    *,
    log: Path,
    stop: threading.Event | None = None,
    every: float = 1.0,
    quiet_for: float = 60.0,
) -> None:
    """Say what the demo's first minutes go to, as the pages do (app/preparation.py): the tiny
    model's build, then the sampling, then `ready: N tasks open`, or one line on what failed.

    A new stage is said at once; within a stage, a quarter more of it done or `quiet_for`
    seconds make a new line (a line said before is not said again). Returns when the job is
    over, or when `stop` is set."""
    stop = stop or threading.Event()
    said: set[str] = set()
    last: preparation.Preparing | None = None
    last_at = 0.0
    while True:
        with session_scope(readonly=True) as session:
            project = session.get(Project, project_id)
            if project is None:
                return
            job = session.get(SamplingJob, job_id) if job_id is not None else None
            # this job's progress, not another's (the pages show any live job of the project)
            now = preparation.base_model_build(project) or (
                preparation.sampling(job) if job is not None and preparation.live_job(job) else None
            )
            state, error = (job.state, job.error) if job is not None else (None, None)
            open_tasks = sampling_repo.count_open_tasks(session, project_id)
        if now is not None and now.what == "failed":
            say(f"error: {now.message.removesuffix(' (see the worker log)')} - details in {log}")
            return
        if state in (JobState.failed, JobState.cancelled):
            lines = [line for line in (error or "").splitlines() if line.strip()]
            why = f": {lines[-1].strip()}" if lines else ""
            say(f"error: sampling job #{job_id} {state.value}{why} - details in {log}")
            return
        if now is None and state in (None, JobState.done):
            say(f"ready: {_plural(open_tasks, 'task')} open")
            return
        if now is not None and now.line not in said:
            if _worth_saying(now, last, last_at, quiet_for):
                say(now.line)
                said.add(now.line)
                last, last_at = now, time.monotonic()
        if stop.wait(every):
            return


def _worth_saying(
    now: preparation.Preparing, last: preparation.Preparing | None, last_at: float, quiet_for: float
) -> bool:
    if last is None or (now.what, now.message, now.total) != (last.what, last.message, last.total):
        return True
    moved = ((now.done or 0) - (last.done or 0)) / (now.total or 1)
    return moved >= 0.25 or time.monotonic() - last_at >= quiet_for
