"""`rankloop demo` with no configuration serves the login page and the printed logins work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, start_process, wait_until
from tests.helpers import CONSOLE_NOISE


def test_demo_serves_login_page_within_60_seconds_with_no_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    env["COLUMNS"] = "200"
    port = free_port()
    log = tmp_path / "demo.log"
    started = time.monotonic()
    proc = start_process(
        [sys.executable, "-m", "rankloop.cli", "demo", "--port", str(port)], env, log, cwd=tmp_path
    )
    try:
        url = f"http://127.0.0.1:{port}/login"

        def login_page_up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(login_page_up, 60, "the demo's login page")
        assert time.monotonic() - started < 60
        output = log.read_text()
        assert url in output
        password = re.search(r"admin\s+/\s+(\S+)", output)
        assert password, output
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            csrf = client.get("/login").cookies["rankloop_csrf"]
            response = client.post(
                "/login",
                data={"username": "admin", "password": password.group(1), "csrf_token": csrf},
            )
            assert response.status_code == 303
            assert "Welcome, admin" in client.get("/").text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert (tmp_path / "rankloop-data" / "rankloop.db").exists()


NOISE = (*CONSOLE_NOISE, "celery@", "[tasks]")  # and the worker's banner


def test_demo_says_what_it_prepares_and_keeps_its_console_quiet(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    """Issue 18, items 7 and 12: progress lines and `ready: N tasks open` on the console; the
    worker's banner, warnings and the libraries' progress bars in the log file only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    env["COLUMNS"] = "200"
    data = tmp_path / "rankloop-data"
    shutil.copytree(tiny_model_path, data / "models" / "tiny")  # built already: no 400 steps
    port = free_port()
    console = tmp_path / "demo.log"
    proc = start_process(
        [sys.executable, "-m", "rankloop.cli", "demo", "--port", str(port)],
        env,
        console,
        cwd=tmp_path,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, console.read_text()
            return "ready: " in console.read_text() or "error: " in console.read_text()

        wait_until(ready, 300, "the demo to be ready")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    output = console.read_text()
    log = data / "logs" / "rankloop.log"
    assert f"Log: {log}" in output
    assert "preparing: sampling 12 prompts… (waiting for a worker)" in output
    assert re.search(r"^preparing: sampling 12 prompts… \(\d+/12\)$", output, re.MULTILINE)
    assert re.search(r"^ready: \d+ tasks? open$", output, re.MULTILINE), output
    for noise in NOISE:
        assert noise not in output, output
    detail = log.read_text()
    assert "Task sampling.prepare_demo" in detail and "succeeded" in detail  # noqa: PT018
    if os.geteuid() == 0:
        assert "superuser privileges" in detail
