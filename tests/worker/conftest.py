"""Worker-test fixtures: a tiny GPT-2 built once per session, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.training.tiny_model import make_tiny_model

TINY_MODEL_STEPS = 100
"""~7 s on 2 cores; enough that greedy text depends on correct position ids."""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding a tiny model + tokenizer saved like a hub checkpoint."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"), steps=TINY_MODEL_STEPS)
