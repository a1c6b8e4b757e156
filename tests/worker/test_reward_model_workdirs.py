"""The reward-model stage's local work directory (rankloop-rm-*) is removed however the stage
ends: trained and stored, failed mid-training, failed storing, or cancelled. A worker runs
stage after stage; each leftover would hold a model's weights on its disk."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.artifacts import ArtifactStore, get_store
from tests.conftest import FreshDatabase
from tests.rounds.seed import commit_ranked_project
from worker.jobs import reward_model as rm_job
from worker.training.outcomes import TrainingCancelled

SETTINGS = {"epochs": 1, "max_length": 64}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of the test's own, so what the stage leaves there is visible."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def project_id(app_database: FreshDatabase, tiny_model_path: Path) -> int:
    return commit_ranked_project(app_database, tiny_model_path)


def _train(project_id: int, **kwargs: Any) -> rm_job.RewardModelRun:
    return rm_job.train_project_reward_model(
        project_id, SETTINGS, register=False, artifact_name="workdirs", **kwargs
    )


def _left(scratch: Path) -> list[str]:
    return sorted(p.name for p in scratch.glob("rankloop-*rm-*"))


def test_a_stored_run_leaves_no_work_directory(project_id: int, scratch: Path) -> None:
    run = _train(project_id)

    assert get_store().exists(f"{run.artifact_uri}/tokenizer.json")  # stored before removal
    assert _left(scratch) == []


def _fails_at_step(step: int) -> Callable[[int, int], None]:
    def progress(done: int, _total: int) -> None:
        if done >= step:
            raise RuntimeError("the progress write failed")

    return progress


def test_a_run_failing_mid_training_leaves_no_work_directory(
    project_id: int, scratch: Path
) -> None:
    with pytest.raises(RuntimeError, match="progress write failed"):
        _train(project_id, progress=_fails_at_step(1))

    assert _left(scratch) == []


def test_a_run_whose_model_cannot_be_stored_leaves_no_work_directory(
    project_id: int, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[list[str]] = []

    class FullStore(ArtifactStore):
        def put_dir(self, local_dir: Path, key: str) -> str:
            stored.append(sorted(p.name for p in local_dir.iterdir()))
            raise OSError("no space left on the artifact store")

    monkeypatch.setattr(rm_job, "get_store", lambda: FullStore(str(scratch / "store")))

    with pytest.raises(OSError, match="no space left"):
        _train(project_id)

    assert len(stored) == 1
    assert "tokenizer.json" in stored[0]  # the model was written locally before the store failed
    assert _left(scratch) == []


def test_a_cancelled_run_leaves_no_work_directory(project_id: int, scratch: Path) -> None:
    with pytest.raises(TrainingCancelled):
        _train(project_id, should_stop=lambda: True)

    assert _left(scratch) == []
