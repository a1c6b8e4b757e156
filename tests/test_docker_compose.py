"""docker-compose.yml agrees with the settings and the CLI (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.config import Settings
from worker.celery_app import QUEUES

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _cli_accepts(argv: list[str]) -> None:
    """Parse argv with the real CLI (plus --help, so nothing runs): unknown names fail."""
    assert argv[0] == "rankloop"
    result = CliRunner().invoke(cli_app, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{argv}: {result.output}"
    if "--queues" in argv:
        queues = argv[argv.index("--queues") + 1].split(",")
        assert set(queues) <= set(QUEUES)


def test_compose_has_the_production_services() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker-sampling", "worker-training"} <= set(
        services
    )
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name


def test_compose_environment_names_are_settings() -> None:
    fields = {f"RANKLOOP_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("RANKLOOP_"):
                assert key in fields, f"{name}: {key} is not a setting"


def test_compose_commands_are_cli_commands_and_migrations_run_first() -> None:
    services = _compose()["services"]
    for name in ("migrate", "web", "worker-sampling", "worker-training"):
        _cli_accepts(services[name]["command"])
    assert services["migrate"]["command"] == ["rankloop", "db", "upgrade"]
    for name in ("web", "worker-sampling", "worker-training"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_workers_listen_on_separate_queues_and_training_asks_for_a_gpu() -> None:
    services = _compose()["services"]
    assert services["worker-sampling"]["command"][-1] == "sampling"
    assert services["worker-training"]["command"][-1] == "training"
    devices = services["worker-training"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)


def _default(value: str) -> str:
    """What compose substitutes for `${NAME:-default}` when NAME is not set."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_workers_and_web_share_the_artifact_volume() -> None:
    services = _compose()["services"]
    store = _default(services["web"]["environment"]["RANKLOOP_ARTIFACT_STORE"])
    assert store == "/artifacts"
    for name in ("web", "worker-sampling", "worker-training"):
        assert any(v.endswith(f":{store}") for v in services[name]["volumes"]), name


def test_the_image_creates_every_volume_path_for_its_user() -> None:
    """A fresh named volume takes its owner from the image's directory, root when missing:
    then the rankloop user could not write artifacts or the Hugging Face cache."""
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    run = " ".join(dockerfile.replace("\\\n", " ").split())
    assert "USER rankloop" in dockerfile
    mounts = {v.split(":")[1] for v in _compose()["services"]["web"]["volumes"]}
    for path in mounts:
        assert re.search(rf"mkdir -p [^&]*{re.escape(path)}(\s|$)", run), path
        assert any(
            re.search(rf"chown -R rankloop [^&]*{re.escape(prefix)}(\s|$)", run)
            for prefix in [path, *(str(p) for p in Path(path).parents if str(p) != "/")]
        ), path
