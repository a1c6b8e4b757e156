"""The demo says what its first minutes go to (issue 18, item 7): the tiny model's build, the
sampling job's progress, then `ready: N tasks open`, or one line on what failed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from app import preparation
from app.config import get_settings
from app.db import session_scope, utcnow
from app.demo import DEMO_SAMPLED_PROMPTS, follow_preparation, start_demo_sampling
from app.models import JobState, SamplingJob
from app.projects import service as projects
from tests.conftest import FreshDatabase

LOG = Path("/data/logs/rankloop.log")


@pytest.fixture
def tiny_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings = get_settings()
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    return settings.tiny_model_dir


@pytest.fixture
def demo_job(app_database: FreshDatabase) -> tuple[int, int]:
    """A `tiny` project with 20 prompts and the demo's first job queued (committed)."""
    with session_scope() as session:
        project = projects.create_project(
            session, name=f"demo {time.monotonic_ns()}", base_model="tiny"
        )
        projects.add_prompts(
            session, project_id=project.id, contents=[f"Question {i}?" for i in range(20)]
        )
        job_id = start_demo_sampling(session, project.id)
        assert job_id is not None
        return project.id, job_id


class Console:
    """What follow_preparation says, followed from another thread."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stop = threading.Event()

    def say(self, line: str) -> None:
        self.lines.append(line)

    def wait_for(self, line: str) -> None:
        deadline = time.monotonic() + 30
        while line not in self.lines:
            assert time.monotonic() < deadline, f"never said {line!r}: {self.lines}"
            time.sleep(0.02)


@pytest.fixture
def console() -> Iterator[Console]:
    said = Console()
    yield said
    said.stop.set()


def follow(console: Console, project_id: int, job_id: int, **kwargs: float) -> threading.Thread:
    thread = threading.Thread(
        target=follow_preparation,
        args=(project_id, job_id, console.say),
        kwargs={"log": LOG, "stop": console.stop, "every": 0.02, **kwargs},
        daemon=True,
    )
    thread.start()
    return thread


def set_job(job_id: int, *, state: JobState, done: int = 0, error: str | None = None) -> None:
    with session_scope() as session:
        job = session.get(SamplingJob, job_id)
        assert job is not None
        job.state, job.prompts_done, job.error = state, done, error
        job.heartbeat_at = utcnow()


def test_the_console_follows_the_build_then_the_sampling_then_says_ready(
    demo_job: tuple[int, int], tiny_model_dir: Path, console: Console
) -> None:
    project_id, job_id = demo_job
    n = DEMO_SAMPLED_PROMPTS
    thread = follow(console, project_id, job_id, quiet_for=3600)

    console.wait_for(f"preparing: sampling {n} prompts… (waiting for a worker)")
    preparation.write_model_status(tiny_model_dir)
    console.wait_for("preparing: building the tiny model…")
    preparation.write_model_status(tiny_model_dir, done=1, total=400)
    console.wait_for("preparing: building the tiny model… (1/400 steps)")
    preparation.write_model_status(tiny_model_dir, done=50, total=400)  # under a quarter more
    preparation.write_model_status(tiny_model_dir, done=200, total=400)
    console.wait_for("preparing: building the tiny model… (200/400 steps)")
    preparation.clear_model_status(tiny_model_dir)
    (tiny_model_dir / "config.json").parent.mkdir(parents=True)
    (tiny_model_dir / "config.json").write_text("{}")
    set_job(job_id, state=JobState.running, done=0)
    console.wait_for(f"preparing: sampling {n} prompts… (0/{n})")
    set_job(job_id, state=JobState.running, done=4)
    console.wait_for(f"preparing: sampling {n} prompts… (4/{n})")
    set_job(job_id, state=JobState.done, done=n)
    console.wait_for("ready: 0 tasks open")  # the test wrote no tasks
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert "preparing: building the tiny model… (50/400 steps)" not in console.lines
    assert console.lines[-1] == "ready: 0 tasks open"


def test_a_failed_job_is_one_error_line_naming_the_log(
    demo_job: tuple[int, int], tiny_model_dir: Path, console: Console
) -> None:
    project_id, job_id = demo_job
    set_job(
        job_id,
        state=JobState.failed,
        error="Traceback (most recent call last):\n  File ...\nRuntimeError: out of memory",
    )

    follow(console, project_id, job_id).join(timeout=30)

    assert console.lines == [
        f"error: sampling job #{job_id} failed: RuntimeError: out of memory - details in {LOG}"
    ]


def test_a_failed_build_is_one_error_line(
    demo_job: tuple[int, int], tiny_model_dir: Path, console: Console
) -> None:
    project_id, job_id = demo_job
    preparation.write_model_status(tiny_model_dir, error="OSError: No space left on device")

    follow(console, project_id, job_id).join(timeout=30)

    assert console.lines == [
        "error: the tiny model could not be built: OSError: No space left on device"
        f" - details in {LOG}"
    ]


def test_ensure_tiny_model_reports_its_steps_then_clears_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import policies
    from worker.training import tiny_model

    monkeypatch.setattr(tiny_model, "make_tiny_model", partial(tiny_model.make_tiny_model, steps=3))
    model_dir = tmp_path / "tiny"
    seen: list[str | None] = []

    def look(done: int, total: int) -> None:
        build = preparation.model_build(model_dir)
        seen.append(build.line if build else None)

    policies.ensure_tiny_model(model_dir, progress=look)

    # before the first step, then the step the file reports (written at most every second)
    assert seen[:2] == [
        "preparing: building the tiny model…",
        "preparing: building the tiny model… (1/3 steps)",
    ]
    assert (model_dir / "config.json").exists()
    assert not preparation.model_status_path(model_dir).exists()
    assert preparation.model_build(model_dir) is None


def test_a_build_that_fails_leaves_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import policies
    from worker.training import tiny_model

    def no_space(out_dir: Path, **_: object) -> Path:
        raise OSError("No space left on device")

    monkeypatch.setattr(tiny_model, "make_tiny_model", no_space)
    model_dir = tmp_path / "tiny"

    with pytest.raises(OSError, match="No space"):
        policies.ensure_tiny_model(model_dir)

    build = preparation.model_build(model_dir)
    assert build is not None
    assert build.what == "failed"
    assert build.line == (
        "the tiny model could not be built: OSError: No space left on device (see the worker log)"
    )


def test_a_demo_started_again_takes_up_the_job_an_earlier_run_left_queued(
    demo_job: tuple[int, int],
) -> None:
    """Stopped while the model was built, the first run left its job queued: the next run
    runs that one rather than leave it "waiting for a worker" beside a new one."""
    project_id, job_id = demo_job

    with session_scope() as session:
        again = start_demo_sampling(session, project_id)
    set_job(job_id, state=JobState.done, done=DEMO_SAMPLED_PROMPTS)
    with session_scope() as session:
        after_it_ran = start_demo_sampling(session, project_id)

    assert again == job_id
    assert after_it_ran not in (None, job_id)
