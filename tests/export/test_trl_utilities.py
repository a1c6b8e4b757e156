"""The pairs export passes through TRL's own data utilities untouched: `is_conversational` and
`maybe_apply_chat_template`, run by TRL itself in a virtual environment of the test's own.

TRL is not a dependency of RankLoop (it pins its own transformers range), so it is installed
without its dependencies into a separate environment that sees the project's packages through
a `.pth` file; the project's environment is left as it was.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.export.conftest import World

TRL_VERSION = "1.16.0"

# Runs inside the TRL environment: loads the export with `datasets` (offline) and reports what
# TRL makes of every row.
CHECK = """
import json, sys
import datasets
from transformers import AutoTokenizer
from trl import is_conversational, maybe_apply_chat_template

datasets.config.HF_DATASETS_OFFLINE = True
datasets.config.HF_HUB_OFFLINE = True
path, cache, model = sys.argv[1:4]
rows = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)
tokenizer = AutoTokenizer.from_pretrained(model)
out = []
for row in rows:
    example = {k: row[k] for k in ("prompt", "chosen", "rejected")}
    out.append({
        "conversational": is_conversational(example),
        "applied": maybe_apply_chat_template(example, tokenizer),
        "row": example,
    })
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trl_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with TRL installed (no dependencies: they come from the project's own)."""
    venv = tmp_path_factory.mktemp("trl-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "rankloop_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", f"trl=={TRL_VERSION}"],
        check=True,
    )
    return python


def trl_view(
    python: Path, api: TestClient, world: World, tmp_path: Path, model: Path, **params: str
) -> list[dict[str, Any]]:
    response = api.get(
        f"/api/v1/projects/{world.conv_project}/pairs.jsonl",
        params=params,
        headers={"Authorization": f"Bearer {world.tokens['read']}", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    path = tmp_path / f"pairs-{params.get('prompt_format', 'auto')}.jsonl"
    path.write_bytes(response.content)
    done = subprocess.run(
        [str(python), "-c", CHECK, str(path), str(tmp_path / "cache"), str(model)],
        check=True,
        capture_output=True,
        text=True,
    )
    return list(json.loads(done.stdout))


def test_trl_reads_the_conversational_export_and_applies_the_chat_template(
    trl_python: Path, api: TestClient, world: World, tmp_path: Path, tiny_model_path: Path
) -> None:
    seen = trl_view(
        trl_python, api, world, tmp_path, tiny_model_path, prompt_format="conversational"
    )
    assert seen
    for item in seen:
        row, applied = item["row"], item["applied"]
        assert item["conversational"] is True
        assert row["chosen"][0]["role"] == "assistant"
        # TRL renders the prompt with the generation prompt, the answers as the rest of the
        # conversation: each answer's text follows its prompt's rendering.
        assert applied["prompt"].endswith("Assistant:")
        last_user = [m for m in row["prompt"] if m["role"] == "user"][-1]["content"]
        assert f"User: {last_user}" in applied["prompt"]
        assert row["chosen"][0]["content"] in applied["chosen"]
        assert row["rejected"][0]["content"] in applied["rejected"]
    systems = [item for item in seen if item["row"]["prompt"][0]["role"] == "system"]
    assert systems
    for item in systems:
        assert item["applied"]["prompt"].startswith(item["row"]["prompt"][0]["content"])


def test_trl_leaves_the_string_export_as_it_is(
    trl_python: Path, api: TestClient, world: World, tmp_path: Path, tiny_model_path: Path
) -> None:
    seen = trl_view(trl_python, api, world, tmp_path, tiny_model_path, prompt_format="text")
    assert seen
    for item in seen:
        assert item["conversational"] is False
        assert item["applied"] == item["row"]
