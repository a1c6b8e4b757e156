"""A real `rankloop worker` consumes the queue: the embedded broker in the SQLite run, Redis in
the PostgreSQL run (RANKLOOP_BROKER_URL is set by tests/conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import start_process, wait_until

pytestmark = pytest.mark.db


def test_worker_runs_a_task_sent_to_its_queue(tmp_path: Path) -> None:
    env = {**os.environ, "RANKLOOP_DATA_DIR": str(tmp_path / "data")}
    worker = start_process(
        [sys.executable, "-m", "rankloop.cli", "worker", "--queues", "sampling"],
        env,
        tmp_path / "worker.log",
    )
    try:
        marker = tmp_path / "pong.txt"
        send = (
            "from worker.tasks import ping; "
            f"ping.apply_async(args=[{str(marker)!r}], queue='sampling')"
        )
        start_process([sys.executable, "-c", send], env, tmp_path / "send.log").wait(timeout=60)
        # The task creates the file, then writes it: wait for the write, not the file alone.
        wait_until(lambda: marker.exists() and marker.read_text() != "", 60, "the task to run")
        assert marker.read_text() == "pong"
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=30)
