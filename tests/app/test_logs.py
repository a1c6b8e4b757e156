"""A quiet console (issue 18, item 12): what a person acts on goes to the console as one line,
the detail to <data dir>/logs/rankloop.log. Each test configures logging in a process of its own
(the setup is once per process and would stay in the test run's)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.config import Settings
from tests.conftest import FreshDatabase, start_process, wait_until
from tests.helpers import CONSOLE_NOISE


def run_python(code: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RANKLOOP_DATA_DIR": str(data_dir)}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_an_error_is_one_console_line_naming_the_log_which_has_the_traceback(
    tmp_path: Path,
) -> None:
    ran = run_python(
        """
        import logging, warnings
        from app.logs import setup_logging
        setup_logging()
        logging.getLogger("kombu.connection").warning("No hostname was supplied. Reverting")
        warnings.warn("a future change", FutureWarning)
        logging.getLogger("app.something").info("detail for the file only")
        try:
            raise ValueError("the model directory is empty")
        except ValueError:
            logging.getLogger("worker.jobs.sampling").exception("Sampling job 3 failed")
        """,
        tmp_path,
    )

    log = tmp_path / "logs" / "rankloop.log"
    console = ran.stdout + ran.stderr
    assert console.splitlines() == [
        "error: Sampling job 3 failed (ValueError: the model directory is empty) "
        f"- details in {log}"
    ]
    detail = log.read_text()
    for line in (
        "No hostname was supplied",
        "FutureWarning: a future change",
        "detail for the file only",
        "Traceback (most recent call last)",
        "ValueError: the model directory is empty",
    ):
        assert line in detail


def test_transformers_warnings_and_progress_bars_stay_off_the_console(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    """Loading and saving a model draws "Loading weights" and "Writing model shards" bars, and
    transformers warns on stderr with a handler of its own."""
    ran = run_python(
        f"""
        from app.logs import setup_logging
        setup_logging(libraries=True)
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging
        model = AutoModelForCausalLM.from_pretrained({str(tiny_model_path)!r})
        model.save_pretrained({str(tmp_path / "copy")!r})
        hf_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
        """,
        tmp_path,
    )

    console = ran.stdout + ran.stderr
    assert console == "", console
    assert "a transformers warning" in (tmp_path / "logs" / "rankloop.log").read_text()


def test_the_filesystem_broker_gets_a_hostname_so_kombu_does_not_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kombu import Connection

    from app.jobs import broker_url

    url = broker_url(Settings(broker_url=None))
    with caplog.at_level(logging.WARNING, logger="kombu"):
        Connection(url).as_uri()
        Connection(url)._info()

    assert url.startswith("filesystem://")
    assert "No hostname" not in caplog.text
    assert broker_url(Settings(broker_url="redis://redis:6379/0")) == "redis://redis:6379/0"


def test_a_worker_keeps_its_console_to_the_banner_and_the_log_path(
    tmp_path: Path, app_database: FreshDatabase
) -> None:
    """Celery's "No hostname" and superuser warnings went to the console before."""
    env = {**os.environ, "RANKLOOP_DATA_DIR": str(tmp_path / "data")}
    output = tmp_path / "worker.out"
    log = tmp_path / "data" / "logs" / "rankloop.log"
    worker = start_process(
        [sys.executable, "-m", "rankloop.cli", "worker", "--queues", "sampling"], env, output
    )
    try:
        wait_until(lambda: log.exists() and " ready." in log.read_text(), 120, "the worker")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    console = output.read_text()
    assert f"Worker log: {log}" in console
    for noise in CONSOLE_NOISE:
        assert noise not in console, console
    if os.geteuid() == 0:  # Celery's warning for a worker run as root is in the log
        assert "superuser privileges" in log.read_text()
