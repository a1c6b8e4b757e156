"""torch's thread count: an explicit count, then RANKLOOP_TORCH_THREADS, then cores / processes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from pydantic import ValidationError

from app.config import Settings, get_settings
from worker import threads
from worker.threads import configure_torch_threads, torch_threads


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("RANKLOOP_TORCH_THREADS", raising=False)
    get_settings.cache_clear()
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    get_settings.cache_clear()


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)


@pytest.mark.usefixtures("eight_cores")
def test_by_default_the_cores_are_shared_by_the_worker_processes() -> None:
    assert torch_threads() == 8
    assert torch_threads(processes=3) == 2
    assert torch_threads(processes=16) == 1  # never zero


@pytest.mark.usefixtures("eight_cores")
def test_the_setting_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKLOOP_TORCH_THREADS", "3")
    get_settings.cache_clear()

    assert torch_threads() == 3
    assert torch_threads(processes=4) == 3  # a count per process, as set
    assert torch_threads(threads=1) == 1  # an explicit count (the simulated loop's) wins


def test_configure_sets_torch_and_returns_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKLOOP_TORCH_THREADS", "1")
    get_settings.cache_clear()

    assert configure_torch_threads() == 1
    assert torch.get_num_threads() == 1


def test_the_default_uses_the_cores_this_process_may_run_on() -> None:
    assert 1 <= threads.available_cores() <= (os.cpu_count() or 1)


def test_the_setting_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKLOOP_TORCH_THREADS", "0")

    with pytest.raises(ValidationError, match="torch_threads"):
        Settings()


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="processes"):
        torch_threads(processes=0)
