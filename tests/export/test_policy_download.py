"""Policy versions as directories: the adapter loads with peft, the merged weights with
from_pretrained, over the API (a tar) and with `rankloop policies export`."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.artifacts import get_store
from app.models import Role
from app.tokens import service as tokens
from rankloop.cli import app as cli
from tests.conftest import FreshDatabase
from tests.factories import (
    base_version,
    make_project,
    make_trained_version,
    make_user,
    make_version,
)

INPUT = torch.tensor([[5, 17, 42, 8, 99, 3]])


@dataclass
class Policies:
    base: int
    trained: int
    stacked: int
    external: int
    token: str
    expected_logits: torch.Tensor
    vocab: int


def _adapter(tiny: Path, out: Path) -> tuple[torch.Tensor, int]:
    """A LoRA adapter with non-zero weights (so merging changes the model) and its logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny))
    vocab = base.config.vocab_size
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.eval()
    with torch.no_grad():
        logits = model(INPUT).logits
    model.save_pretrained(str(out))
    return logits, vocab


@pytest.fixture(scope="module")
def policies(
    app_database: FreshDatabase, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Policies]:
    adapter_dir = tmp_path_factory.mktemp("adapter")
    logits, vocab = _adapter(tiny_model_path, adapter_dir)
    uri = get_store().put_dir(adapter_dir, "projects/test/rounds/1/adapter")
    with app_database.session() as session:
        admin = make_user(session, role=Role.admin)
        project = make_project(session, base_model=str(tiny_model_path))
        base = base_version(session, project)
        adapter = {"base_model": str(tiny_model_path), "artifact_uri": uri}
        trained = make_trained_version(
            session, project, base, **adapter, metrics={"merged_adapters": []}
        )
        stacked = make_trained_version(
            session, project, trained, **adapter, metrics={"merged_adapters": [uri]}
        )
        external = make_version(session, project, name="gpt-x")
        secret = tokens.create_token(
            session, name="dl", scopes=["read"], created_by_id=admin.id
        ).secret
        session.commit()
        yield Policies(base.id, trained.id, stacked.id, external.id, secret, logits, vocab)


@pytest.fixture(scope="module")
def api(app_database: FreshDatabase) -> Iterator[TestClient]:
    from rankloop.web import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


def _download(api: TestClient, policies: Policies, version: int, tmp: Path, **params: str) -> Path:
    response = api.get(
        f"/api/v1/policies/{version}/download",
        params=params,
        headers={"Authorization": f"Bearer {policies.token}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        names = archive.getnames()
        archive.extractall(tmp, filter="data")
    roots = {name.split("/")[0] for name in names}
    assert len(roots) == 1  # one directory
    root = roots.pop()
    assert response.headers["content-disposition"] == f'attachment; filename="{root}.tar"'
    return tmp / root


def test_the_adapter_download_loads_with_peft_as_is(
    api: TestClient, policies: Policies, tiny_model_path: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    directory = _download(api, policies, policies.trained, tmp_path)
    assert (directory / "adapter_config.json").exists()
    manifest = json.loads((directory / "rankloop.json").read_text())
    assert manifest["policy_version_id"] == policies.trained
    assert manifest["merged"] is False
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_path)), str(directory)
    )
    model.eval()
    with torch.no_grad():
        logits = model(INPUT).logits
    torch.testing.assert_close(logits, policies.expected_logits)


def test_the_merged_download_loads_with_from_pretrained(
    api: TestClient, policies: Policies, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = _download(api, policies, policies.trained, tmp_path, merged="true")
    model = AutoModelForCausalLM.from_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(directory))
    model.eval()
    with torch.no_grad():
        logits = model(INPUT).logits[..., : policies.vocab]
    torch.testing.assert_close(logits, policies.expected_logits, atol=1e-4, rtol=1e-4)
    again = _download(api, policies, policies.trained, tmp_path / "again", merged="true")
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("which", "merged"),
    [("external", "false"), ("external", "true"), ("base", "false"), ("stacked", "false")],
)
def test_versions_without_a_loadable_adapter_are_409(
    api: TestClient, policies: Policies, which: str, merged: str
) -> None:
    response = api.get(
        f"/api/v1/policies/{getattr(policies, which)}/download",
        params={"merged": merged},
        headers={"Authorization": f"Bearer {policies.token}"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_an_unknown_version_is_404(api: TestClient, policies: Policies) -> None:
    response = api.get(
        "/api/v1/policies/999999/download", headers={"Authorization": f"Bearer {policies.token}"}
    )
    assert response.status_code == 404


def test_the_cli_exports_the_merged_weights_to_a_directory(
    policies: Policies, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    target = tmp_path / "exported"
    result = CliRunner().invoke(
        cli, ["policies", "export", str(policies.stacked), str(target), "--merged"]
    )
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(str(target))
    assert json.loads((target / "rankloop.json").read_text())["merged"] is True
    assert model.config.vocab_size >= policies.vocab


def test_the_cli_refuses_an_adapter_that_needs_merged_ones(
    policies: Policies, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["policies", "export", str(policies.stacked), str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert "merged" in result.output
