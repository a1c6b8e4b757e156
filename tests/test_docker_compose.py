"""The production path: docker-compose.yml, docker-compose.gpu.yml, the Dockerfile, .env.example.

No container engine runs here, so each check reads the files the way Compose would (YAML merge
keys, `${VAR:-default}` interpolation, override files, `extends`, profiles) and then tests what
the setting is for, against the real thing where this machine has it: commands parse through
the real CLI with their values, the PostgreSQL and Redis healthchecks run against the servers
of the test run and against a closed port, the worker healthcheck runs the real CLI against a
database. Each check is a function of the compose model, so `test_the_checks_catch_...` can
show that a broken copy fails it. With a container engine and `docker compose` present, the
compose CLI's own `config` runs too (skipped here, with the reason).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from app.config import Settings
from app.jobs import QUEUES
from rankloop.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
GPU_COMPOSE = ROOT / "docker-compose.gpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = Path(__file__).resolve().parent / "compose_spec" / "compose-spec.json"
APP_SERVICES = ("migrate", "web", "worker-sampling", "worker-training", "worker-judging")
WORKERS = ("worker-sampling", "worker-training", "worker-judging")
# The judging worker stays on the CPU with the GPU override too (it mostly waits on endpoints).
GPU_WORKERS = ("worker-sampling", "worker-training")
HF_CACHE = "/home/rankloop/.cache/huggingface"
# What a filled-in .env provides: compose refuses to start without these (`${NAME:?...}`).
REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "pg-" + "7f3b9c1d5e8a2f4b6c0d9e1a3b5c7d9f",
    "RANKLOOP_SECRET_KEY": "sk-" + "c4e8a1f7b3d9e5a2c6f0b8d4e1a7c3f9b5d2e8a4",
}
Compose = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Reading compose files as Compose does


class MissingVariable(Exception):
    """A `${NAME:?message}` whose variable is unset (compose stops with the message)."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<plain>\w+))"
)


def interpolate_text(text: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    return node


def read(path: Path) -> Compose:
    return yaml.safe_load(path.read_text())  # `<<: *anchor` merge keys are resolved here


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, as far as these files need it: mappings merge key
    by key, anything else (a command, a list of devices) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def resolve_extends(model: Compose, directory: Path) -> Compose:
    services = model.get("services", {})
    for name, service in list(services.items()):
        extends = service.pop("extends", None)
        if extends is None:
            continue
        source = read(directory / extends["file"]) if "file" in extends else model
        base = resolve_extends(source, directory)["services"][extends["service"]]
        services[name] = merge(base, service)
    return model


def load(
    *files: Path, env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> Compose:
    """The project compose would run: files merged in order, `extends` resolved, services of
    inactive profiles dropped, variables substituted from `env` (default: a filled-in .env)."""
    model: Compose = {}
    for path in files or (COMPOSE,):
        model = merge(model, resolve_extends(read(path), path.parent))
    model["services"] = {
        name: service
        for name, service in model["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }
    return interpolate(model, REQUIRED_ENV if env is None else env)


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def parse_cli(args: list[str]) -> Any:
    """Parse a `rankloop ...` command line with the real CLI, values included (an int option
    given `eighty` fails, as do unknown options), without running the command; returns the
    command's click context."""
    assert args[0] == "rankloop", args
    command: Any = typer.main.get_command(cli_app)
    ctx = command.make_context("rankloop", list(args[1:]))
    while hasattr(command, "resolve_command"):  # a group (typer ships its own click)
        # click keeps the subcommand's name and arguments apart (as Group.invoke joins them)
        head = getattr(ctx, "_protected_args", None)
        head = getattr(ctx, "protected_args", []) if head is None else head
        name, sub, rest = command.resolve_command(ctx, [*head, *ctx.args])
        assert sub is not None, args
        command, ctx = sub, sub.make_context(name or "", rest, parent=ctx)
    return ctx


def options(args: list[str]) -> dict[str, Any]:
    try:
        return dict(parse_cli(args).params)
    except Exception as exc:
        if not hasattr(exc, "format_message"):  # not a usage error
            raise
        raise AssertionError(f"{args}: {exc.format_message()}") from exc


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    assert kind in ("CMD", "CMD-SHELL"), test
    return ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    assert parts, f"not a duration: {text}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(n) * units[u] for n, u in parts)


def named_mounts(service: dict[str, Any], volumes: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume (bind mounts and anonymous volumes are left out)."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = entry.get("source"), entry["target"]
        else:
            source, target, *_ = entry.split(":") + [""]
        if source in volumes:
            mounts[target] = source
    return mounts


def is_rankloop(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("rankloop:") or "build" in service


# ---------------------------------------------------------------------------------------------
# The checks: each takes the compose model and raises AssertionError saying what is wrong.


def check_one_build_per_image(model: Compose) -> None:
    """Several services building one image race (`image already exists`): one builds it, the
    others run it and never pull it."""
    services = model["services"]
    builders: dict[str, list[str]] = {}
    for name, service in services.items():
        if "build" in service:
            assert service.get("image"), f"{name} builds an image without naming it"
            builders.setdefault(service["image"], []).append(name)
    assert builders, "no service builds the RankLoop image"
    for image, names in builders.items():
        assert len(names) == 1, f"{image} is built by {names}"
    for name, service in services.items():
        if "build" not in service and service.get("image") in builders:
            assert service.get("pull_policy") == "never", (
                f"{name} runs {service['image']}, built here: pull_policy must be never, or "
                "compose tries to pull it from a registry"
            )
        elif "build" not in service:
            assert not str(service.get("image", "")).startswith("rankloop"), (
                f"{name} runs {service.get('image')}, which no service builds"
            )


def check_shared_volumes(model: Compose) -> None:
    """Web and the workers see the same data directory, artifact store and model cache."""
    services, volumes = model["services"], model.get("volumes") or {}
    env = services["web"]["environment"]
    data_dir, store = env["RANKLOOP_DATA_DIR"], env["RANKLOOP_ARTIFACT_STORE"]
    wanted = [data_dir, HF_CACHE] + ([store] if "://" not in store else [])
    reference = named_mounts(services["web"], volumes)
    for path in wanted:
        assert path in reference, f"web mounts no named volume on {path}"
    for name, service in services.items():
        if not is_rankloop(service):
            continue
        mounts = named_mounts(service, volumes)
        for path in wanted:
            assert mounts.get(path) == reference[path], (
                f"{name} mounts {mounts.get(path)!r} on {path}, web mounts {reference[path]!r}"
            )
        for key in ("RANKLOOP_DATA_DIR", "RANKLOOP_ARTIFACT_STORE"):
            assert service["environment"][key] == env[key], f"{name}: {key} differs from web's"


def check_commands(model: Compose) -> None:
    """Every RankLoop command parses with its values, and the values make sense."""
    services = model["services"]
    serving: set[str] = set()
    for name, service in services.items():
        if not is_rankloop(service):
            continue
        args = argv(service["command"])
        values = options(args)
        if args[1] == "serve":
            port, workers = values["port"], values["workers"]
            assert 1 <= port <= 65535, f"{name}: port {port}"
            assert workers >= 1, f"{name}: {workers} web workers"
            assert values["host"] == "0.0.0.0", f"{name}: binds {values['host']}, not reachable"
            published = [str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])]
            assert published == [str(port)], f"{name}: publishes {published}, serves on {port}"
            url = urlsplit(re.search(r"https?://[^'\"]+", str(service["healthcheck"]["test"]))[0])
            assert url.port == port, f"{name}: healthcheck asks port {url.port}, serves {port}"
        elif args[1] == "worker":
            queues = values["queues"].split(",")
            assert set(queues) <= set(QUEUES), f"{name}: queues {queues}"
            serving |= set(queues)
            check = healthcheck_argv(service)
            assert options(check).get("check") is True, f"{name}: healthcheck {check}"
            assert options(check)["queues"] == values["queues"], f"{name}: checks other queues"
        elif args[1:3] == ["db", "upgrade"]:
            assert values["wait"] > 0, f"{name}: migrations do not wait for the database"
    assert serving == set(QUEUES), f"no worker consumes {set(QUEUES) - serving}"


def check_postgres_healthcheck(model: Compose, run: Callable[[list[str], int], int]) -> None:
    """`pg_isready` over TCP: passes on a live server, fails on a closed port."""
    service = model["services"]["postgres"]
    args = healthcheck_argv(service)
    text = " ".join(args)
    host = re.search(r"(?:-h|--host)[ =](\S+)", text)
    assert host, f"postgres healthcheck names no host, so it asks the socket: {args}"
    assert not host[1].startswith("/"), f"postgres healthcheck without a TCP host: {args}"
    assert run(args, 5432) == 0, f"{args} fails against a running PostgreSQL"
    assert run(args, closed_port()) != 0, f"{args} passes with no PostgreSQL listening"


def check_redis_healthcheck(model: Compose, run: Callable[[list[str], int], int]) -> None:
    service = model["services"]["redis"]
    args = healthcheck_argv(service)
    assert run(args, 6379) == 0, f"{args} fails against a running Redis"
    assert run(args, closed_port()) != 0, f"{args} passes with no Redis listening"


def check_dependencies(model: Compose) -> None:
    services = model["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart", "no") in ("no", "on-failure") or re.fullmatch(
        r"on-failure:\d+", services["migrate"]["restart"]
    ), "migrate restarted for ever"
    for name in ("web", *WORKERS):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def check_env_file(model: Compose) -> None:
    """.env reaches every RankLoop service, so each documented setting put there works."""
    for name, service in model["services"].items():
        if not is_rankloop(service):
            continue
        files = service.get("env_file")
        files = [files] if isinstance(files, str) else files or []
        paths = [f if isinstance(f, str) else f["path"] for f in files]
        assert ".env" in [p.removeprefix("./") for p in paths], f"{name} does not read .env"


def check_no_empty_credentials(model: Compose) -> None:
    """A credential must be left unset rather than set to "": an empty token is sent as
    `Authorization: Bearer ` and an empty password is a password."""
    for name, service in model["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) if "=" in e else (e, None) for e in environment)
        for key, value in environment.items():
            if re.search(r"TOKEN|SECRET|PASSWORD|_KEY$|CREDENTIAL", key):
                assert value not in ("", None), f"{name}: {key} is set to an empty value"


def check_no_gpu(model: Compose) -> None:
    for name, service in model["services"].items():
        devices = (
            service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        )
        assert not devices, f"{name} reserves devices: it cannot start on a host without GPUs"
        assert "gpus" not in service, name
        assert service.get("runtime") != "nvidia", name


def gpu_reservations(model: Compose) -> dict[str, list[str]]:
    found = {}
    for name, service in model["services"].items():
        devices = (
            service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        )
        for device in devices or []:
            if "gpu" in device.get("capabilities", []):
                assert "count" not in device, f"{name}: a count maps every copy to GPU 0"
                found[name] = [str(d) for d in device["device_ids"]]
    return found


def check_gpu_override(model: Compose) -> None:
    reservations = gpu_reservations(model)
    assert set(GPU_WORKERS) <= set(reservations), f"GPU workers: {sorted(reservations)}"
    for name, ids in reservations.items():
        assert len(ids) == 1, f"{name} reserves {ids}: one GPU per worker"
        if is_rankloop(model["services"][name]):
            assert model["services"][name]["image"] == "rankloop:cuda", name
    assert "web" not in reservations
    assert model["services"]["web"]["image"] == "rankloop:cpu"


def check_vllm_server(model: Compose) -> None:
    """The optional vLLM server is what the 'openai' generation backend needs: a pinned image,
    LoRA on and loadable at run time, one GPU of its own choosing, the workers' artifact store
    at their path (read-only: it loads adapters from there) and their model cache, .env for
    its key, a healthcheck on the port it serves, reached at http://vllm:PORT/v1 inside the
    project's network only."""
    service = model["services"]["vllm"]
    image, _, tag = str(service["image"]).partition(":")
    assert image == "vllm/vllm-openai", image
    assert tag not in ("", "latest"), f"vllm image not pinned: {service['image']}"
    args = argv(service["command"])
    assert "--enable-lora" in args, "the server cannot serve versions' adapters"
    port = args[args.index("--port") + 1] if "--port" in args else "8000"
    assert "--model" in args, args
    assert model["services"]["vllm"]["environment"].get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") in (
        "True",
        "true",
        "1",
    ), "a new version's adapter could not be loaded without a restart"
    health = urlsplit(re.search(r"https?://[^'\"]+", str(service["healthcheck"]["test"]))[0])
    assert str(health.port) == port, f"healthcheck asks port {health.port}, serves {port}"
    reservations = gpu_reservations(model)
    assert len(reservations.get("vllm", [])) == 1, "the vLLM server reserves no single GPU"
    volumes = model.get("volumes") or {}
    worker = model["services"]["worker-sampling"]
    store = worker["environment"]["RANKLOOP_ARTIFACT_STORE"]
    mounts = [str(v) for v in service.get("volumes", [])]
    if "://" not in store:
        worker_volume = named_mounts(worker, volumes)[store]
        assert f"{worker_volume}:{store}:ro" in mounts, (
            f"vllm does not read the artifact store {worker_volume} at {store}, read-only"
        )
    cache = named_mounts(worker, volumes)[HF_CACHE]
    assert any(m.startswith(f"{cache}:") for m in mounts), "vllm downloads the model again"
    files = service.get("env_file") or []
    assert ".env" in [f if isinstance(f, str) else f["path"] for f in files], "no .env for keys"
    assert not service.get("ports"), "the vLLM server is published outside the project"


def check_stop_grace(model: Compose) -> None:
    """A worker that Docker kills mid-stage loses the stage: it gets time to finish it."""
    services = model["services"]
    grace = {n: duration_seconds(services[n].get("stop_grace_period", "10s")) for n in WORKERS}
    assert grace["worker-sampling"] >= 5 * 60, grace
    assert grace["worker-training"] >= 30 * 60, grace
    assert grace["worker-judging"] >= 60, grace
    for name in WORKERS:  # exec form: the worker is PID 1 and gets the SIGTERM itself
        assert isinstance(services[name]["command"], list), name


def check_ports_and_proxy(model: Compose) -> None:
    """Published on loopback by default, where only a local proxy reaches the app: then (and
    only then) every forwarded header may be trusted."""
    web = model["services"]["web"]
    for name, service in model["services"].items():
        if name != "web":
            assert not service.get("ports"), f"{name} publishes a port"
    for port in web["ports"]:
        address = str(port).rsplit(":", 2)[0] if str(port).count(":") == 2 else "0.0.0.0"
        trusted = web["environment"].get("RANKLOOP_FORWARDED_ALLOW_IPS")
        if address not in ("127.0.0.1", "::1", "[::1]", "localhost"):
            assert trusted not in ("*", None), f"web on {address} trusts {trusted!r} as proxies"
        assert trusted is not None, "web does not say which proxies it trusts"


def check_logging(model: Compose) -> None:
    for name, service in model["services"].items():
        logging = service.get("logging") or {}
        assert logging.get("driver") in ("json-file", "local"), f"{name}: no rotated log driver"
        if logging["driver"] == "json-file":
            assert "max-size" in logging.get("options", {}), f"{name}: logs grow without bound"


# ---------------------------------------------------------------------------------------------
# Running healthchecks here


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _needs(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed here")


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_on_port(default_port: int) -> Callable[[list[str], int], int]:
    """Run a healthcheck here, pointed at `port` instead of the service's own `default_port`:
    the port is named in the command (compose's container reaches the service on it)."""

    def run(args: list[str], port: int) -> int:
        text = [a.replace(str(default_port), str(port)) for a in args]
        if port != default_port:
            assert text != args, f"{args} names no port: it cannot be pointed at a closed one"
        env = {**os.environ, "PGCONNECT_TIMEOUT": "3"}
        return subprocess.run(text, env=env, capture_output=True, timeout=20).returncode

    return run


def running(port: int, tool: str) -> None:
    _needs(tool)
    if not _reachable(port):
        pytest.skip(f"nothing listens on 127.0.0.1:{port} (.ci/run starts it)")


# ---------------------------------------------------------------------------------------------
# The tests


def test_the_compose_files_validate_against_the_compose_schema() -> None:
    import jsonschema_rs

    validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()))
    for path in (COMPOSE, GPU_COMPOSE):
        raw = read(path)
        errors = [e.message for e in validator.iter_errors(raw)]
        assert not errors, f"{path.name}: {errors}"
    for profile in ((), ("gpu1",), ("vllm",)):
        merged = load(COMPOSE, GPU_COMPOSE, profiles=profile)
        assert not [e.message for e in validator.iter_errors(merged)]
    broken = read(COMPOSE)
    broken["services"]["redis"]["healthcheck"]["tset"] = broken["services"]["redis"][
        "healthcheck"
    ].pop("test")
    assert not validator.is_valid(broken), "the schema does not catch a misspelt key"


def test_compose_needs_the_secrets_and_dot_env_example_leaves_them_empty() -> None:
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(REQUIRED_ENV) <= set(example)
    assert all(example[name] == "" for name in REQUIRED_ENV), "placeholders pass `${NAME:?}`"
    for name in REQUIRED_ENV:
        with pytest.raises(MissingVariable, match=name):
            load(env={**example, **{k: v for k, v in REQUIRED_ENV.items() if k != name}})
    assert load(env=REQUIRED_ENV)


def test_one_service_builds_each_image_the_others_run_it() -> None:
    check_one_build_per_image(load())
    check_one_build_per_image(load(COMPOSE, GPU_COMPOSE, profiles=("gpu1",)))


def test_web_and_workers_share_data_artifacts_and_model_cache_volumes() -> None:
    check_shared_volumes(load())
    check_shared_volumes(load(COMPOSE, GPU_COMPOSE, profiles=("gpu1",)))


def test_every_command_parses_through_the_real_cli_with_sensible_values() -> None:
    check_commands(load())
    check_commands(load(COMPOSE, GPU_COMPOSE, profiles=("gpu1",)))


def test_services_start_in_order_and_each_has_a_healthcheck() -> None:
    check_dependencies(load())


def test_the_postgres_healthcheck_uses_tcp_and_tells_up_from_down() -> None:
    running(5432, "pg_isready")
    check_postgres_healthcheck(load(), run_on_port(5432))


def test_the_redis_healthcheck_tells_up_from_down() -> None:
    running(6379, "redis-cli")
    check_redis_healthcheck(load(), run_on_port(6379))


def test_env_file_reaches_every_rankloop_service() -> None:
    check_env_file(load())
    check_env_file(load(COMPOSE, GPU_COMPOSE, profiles=("gpu1",)))
    # and what it carries is not overridden: `environment` wins over env_file
    for name, service in load()["services"].items():
        if is_rankloop(service):
            assert "RANKLOOP_SESSION_HOURS" not in service["environment"], name
            assert "HF_TOKEN" not in service["environment"], name


def test_environment_names_are_settings() -> None:
    fields = {f"RANKLOOP_{name.upper()}" for name in Settings.model_fields}
    for name, service in load()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("RANKLOOP_"):
                assert key in fields, f"{name}: {key} is not a setting"


def test_no_credential_is_set_to_an_empty_string() -> None:
    """With only the two required values set (no HF_TOKEN, no S3 keys), nothing the app
    treats as a credential is set to ""; and the settings the services get load."""
    model = load(env=REQUIRED_ENV)
    check_no_empty_credentials(model)
    environment = model["services"]["web"]["environment"]
    settings = Settings(**{k.removeprefix("RANKLOOP_").lower(): v for k, v in environment.items()
                           if k.startswith("RANKLOOP_")})
    assert settings.hf_token is None
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url)
    assert (url.host, url.password) == ("postgres", REQUIRED_ENV["POSTGRES_PASSWORD"])


def test_the_default_file_runs_on_a_host_without_gpus() -> None:
    check_no_gpu(load())
    check_no_gpu(read(COMPOSE))


def test_the_gpu_override_gives_each_worker_one_gpu_of_its_own_choosing() -> None:
    check_gpu_override(load(COMPOSE, GPU_COMPOSE))
    assert gpu_reservations(load(COMPOSE, GPU_COMPOSE)) == {
        "worker-training": ["0"],
        "worker-sampling": ["0"],
    }
    assert gpu_reservations(load(COMPOSE, GPU_COMPOSE, profiles=("gpu1",)))[
        "worker-training-gpu1"
    ] == ["1"]
    three = {"RANKLOOP_SAMPLING_GPU": "1", "RANKLOOP_TRAINING_GPU1": "2"}
    spread = load(COMPOSE, GPU_COMPOSE, env={**REQUIRED_ENV, **three}, profiles=("gpu1",))
    check_gpu_override(spread)
    assert gpu_reservations(spread) == {
        "worker-training": ["0"],
        "worker-sampling": ["1"],
        "worker-training-gpu1": ["2"],
    }
    extra = spread["services"]["worker-training-gpu1"]
    assert argv(extra["command"]) == argv(spread["services"]["worker-training"]["command"])


def test_the_vllm_server_is_optional_and_serves_the_openai_backend() -> None:
    assert "vllm" not in load(COMPOSE, GPU_COMPOSE)["services"], "vllm starts without its profile"
    served = load(COMPOSE, GPU_COMPOSE, profiles=("vllm",))
    check_vllm_server(served)
    check_gpu_override(served)
    check_one_build_per_image(served)
    check_ports_and_proxy(served)
    check_logging(served)
    assert gpu_reservations(served)["vllm"] == ["1"]
    moved = {**REQUIRED_ENV, "RANKLOOP_VLLM_GPU": "0", "RANKLOOP_VLLM_MODEL": "org/policy"}
    shared = load(COMPOSE, GPU_COMPOSE, env=moved, profiles=("vllm",))
    assert gpu_reservations(shared)["vllm"] == ["0"]
    assert "org/policy" in argv(shared["services"]["vllm"]["command"])
    for change in (
        _set("vllm", "command", ["--model", "m", "--port", "8000"]),  # no --enable-lora
        _set("vllm", "image", "vllm/vllm-openai:latest"),
        _set("vllm", "volumes", ["hf-cache:/root/.cache/huggingface"]),  # no artifacts
        _set("vllm", "environment", {}),  # no runtime LoRA loading
    ):
        broken = load(COMPOSE, GPU_COMPOSE, profiles=("vllm",))
        change(broken)
        with pytest.raises(AssertionError):
            check_vllm_server(broken)


def test_workers_get_time_to_finish_a_stage_when_stopped() -> None:
    check_stop_grace(load())


def test_ports_are_local_by_default_and_proxy_trust_follows_the_binding() -> None:
    check_ports_and_proxy(load())
    public = load(env={**REQUIRED_ENV, "RANKLOOP_BIND_ADDRESS": "0.0.0.0"})
    with pytest.raises(AssertionError, match="trusts"):
        check_ports_and_proxy(public)
    check_ports_and_proxy(
        load(env={**REQUIRED_ENV, "RANKLOOP_BIND_ADDRESS": "0.0.0.0",
                  "RANKLOOP_FORWARDED_ALLOW_IPS": "10.0.0.5"})
    )


def test_every_service_rotates_its_logs() -> None:
    check_logging(load())


def test_serve_passes_the_trusted_proxies_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from tests.conftest import reset_app_caches

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setenv("RANKLOOP_FORWARDED_ALLOW_IPS", "10.0.0.5,192.168.0.0/16")
    reset_app_caches()
    try:
        web = load()["services"]["web"]
        result = CliRunner().invoke(cli_app, argv(web["command"])[1:])
    finally:
        monkeypatch.undo()
        reset_app_caches()
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is True
    assert seen["forwarded_allow_ips"] == "10.0.0.5,192.168.0.0/16"
    assert (seen["port"], seen["workers"]) == (8000, 2)


def test_the_web_healthcheck_asks_a_route_the_app_serves() -> None:
    from app.main import create_app

    web = load()["services"]["web"]
    url = urlsplit(re.search(r"https?://[^'\"]+", str(web["healthcheck"]["test"]))[0])
    routes = {(r.path, m) for r in create_app().routes for m in getattr(r, "methods", ())}
    assert (url.path, "GET") in routes


@pytest.mark.usefixtures("app_database")
def test_the_worker_healthcheck_reports_the_heartbeat_of_this_hosts_worker() -> None:
    from celery.utils.nodenames import host_format

    from worker.health import beat

    for name in WORKERS:
        service = load()["services"][name]
        check = healthcheck_argv(service)
        queues = options(check)["queues"]
        hostname = host_format(f"rankloop-{queues}@%h")
        assert CliRunner().invoke(cli_app, check[1:]).exit_code == 1, "alive without a beat"
        beat(hostname, queues)
        result = CliRunner().invoke(cli_app, check[1:])
        assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
# The image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_args() -> dict[str, str | None]:
    args: dict[str, str | None] = {}
    for kind, rest in dockerfile_instructions():
        if kind == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"') if _ else None
    return args


def test_build_arguments_are_declared_in_compose_and_the_dockerfile() -> None:
    args = dockerfile_args()
    assert {"EXTRAS", "TORCH_SPEC", "TORCH_INDEX_URL"} <= set(args)
    for model in (read(COMPOSE), read(GPU_COMPOSE)):
        for name, service in model["services"].items():
            if "build" not in service:
                continue
            declared = service["build"]["args"]
            names = {a.split("=")[0] for a in declared} if isinstance(declared, list) else set(
                declared
            )
            assert {"EXTRAS", "TORCH_SPEC", "TORCH_INDEX_URL"} <= names, name
            assert names <= set(args), f"{name}: {names - set(args)} is no ARG"
    # CPU by default; the GPU override builds from pip's default index (CUDA torch on Linux)
    assert (args["TORCH_INDEX_URL"] or "").rstrip("/").endswith("/cpu")
    cuda = load(COMPOSE, GPU_COMPOSE)["services"]["worker-training"]["build"]["args"]
    assert cuda["TORCH_INDEX_URL"] == ""
    # the torch the image pins is the one the tests run with
    pinned = re.search(r'torch==([\w.]+)', (ROOT / ".ci" / "install").read_text())
    assert pinned, ".ci/install pins no torch"
    assert args["TORCH_SPEC"] == f"torch=={pinned[1]}"
    assert Requirement(args["TORCH_SPEC"]).specifier.contains(metadata.version("torch").split(
        "+")[0])


def test_the_image_installs_pinned_dependencies_before_the_code() -> None:
    steps = dockerfile_instructions()
    index = {f"{kind} {rest}": i for i, (kind, rest) in enumerate(steps)}
    torch = next(i for s, i in index.items() if s.startswith("RUN") and "$TORCH_SPEC" in s)
    lock = next(i for s, i in index.items() if s.startswith("RUN") and "-r requirements.lock" in s)
    code = min(i for s, i in index.items() if s.startswith("COPY app"))
    copy_lock = next(
        i for s, i in index.items() if s.startswith("COPY") and "requirements.lock" in s
    )
    assert torch < copy_lock < lock < code, "a code change would reinstall the dependencies"
    assert "--index-url" in steps[torch][1], "TORCH_INDEX_URL is not used"


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_lock_file_pins_every_runtime_dependency_as_tested() -> None:
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch" not in pins, "torch comes from TORCH_INDEX_URL, not the lock"
    for text in project["dependencies"]:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    for name in ("transformers", "huggingface-hub"):
        assert name in pins, name
    # closed: installing the lock pulls in nothing unpinned (as this environment's metadata says)
    for name in pins:
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(req.name) in {*pins, "torch"}, f"{name} needs {req.name}"
    # and CI runs the tests on exactly these versions (.ci/install uses it as constraints)
    assert "-c requirements.lock" in (ROOT / ".ci" / "install").read_text()
    drift = {n: (v, metadata.version(n)) for n, v in pins.items() if metadata.version(n) != v}
    assert not drift, f"installed versions differ from the lock (rerun .ci/install): {drift}"


def dockerignore_excludes(path: str) -> bool:
    import fnmatch

    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(p.rsplit("/", 1)[-1], pattern.removeprefix("**/"))
            for p in prefixes
        ):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_what_the_image_copies() -> None:
    for path in (".env", ".git/config", ".venv/bin/python", "rankloop-data/rankloop.db",
                 "app/__pycache__/cli.cpython-311.pyc"):
        assert dockerignore_excludes(path), path
    assert not dockerignore_excludes(".env.example")
    for kind, rest in dockerfile_instructions():
        if kind == "COPY":
            for source in rest.split()[:-1]:
                assert not dockerignore_excludes(source), f"COPY {source} is ignored"
                assert (ROOT / source).exists(), source


def test_the_image_runs_as_a_fixed_user_that_owns_every_volume_path() -> None:
    """A fresh named volume takes its owner from the image's directory (root when missing)."""
    run = " ".join(rest for kind, rest in dockerfile_instructions() if kind == "RUN")
    assert ("USER", "rankloop") in dockerfile_instructions()
    assert re.search(r"useradd [^&]*--uid \S+", run), "the rankloop user has no fixed UID"
    mounts: set[str] = set()
    for service in load()["services"].values():
        if is_rankloop(service):
            mounts |= set(named_mounts(service, load()["volumes"]))
    for path in mounts:
        assert re.search(rf"mkdir -p [^&]*{re.escape(path)}(\s|$)", run), path
        assert any(
            re.search(rf"chown -R rankloop(:rankloop)? [^&]*{re.escape(prefix)}(\s|$)", run)
            for prefix in [path, *(str(p) for p in Path(path).parents if str(p) != "/")]
        ), path


# ---------------------------------------------------------------------------------------------
# The checks catch what they are for


def _mutated(change: Callable[[Compose], None]) -> Compose:
    model = load()
    change(model)
    return model


def _own_artifacts(model: Compose) -> None:
    model["volumes"]["web-artifacts"] = None
    web = model["services"]["web"]
    web["volumes"] = ["web-artifacts:/artifacts" if v.endswith(":/artifacts") else v
                      for v in web["volumes"]]


def _set(service: str, key: str, value: Any) -> Callable[[Compose], None]:
    def change(model: Compose) -> None:
        model["services"][service][key] = value

    return change


def _healthcheck(service: str, test: Any) -> Callable[[Compose], None]:
    def change(model: Compose) -> None:
        model["services"][service]["healthcheck"]["test"] = test

    return change


def _gpu(model: Compose) -> None:
    model["services"]["worker-training"]["deploy"] = {"resources": {"reservations": {
        "devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}}


def _two_builders(model: Compose) -> None:
    model["services"]["web"]["build"] = "."


def _empty_token(model: Compose) -> None:
    model["services"]["web"]["environment"]["HF_TOKEN"] = ""


def _no_env_file(model: Compose) -> None:
    del model["services"]["worker-training"]["env_file"]


def _web_command(*args: str) -> Callable[[Compose], None]:
    return _set("web", "command", ["rankloop", "serve", *args])


BROKEN: dict[str, tuple[Callable[[Compose], None], Callable[[Compose], None]]] = {
    "web has its own artifacts volume": (_own_artifacts, check_shared_volumes),
    "--port eighty": (_web_command("--host", "0.0.0.0", "--port", "eighty"), check_commands),
    "--workers two": (
        _web_command("--host", "0.0.0.0", "--port", "8000", "--workers", "two"), check_commands
    ),
    "--workers 0": (
        _web_command("--host", "0.0.0.0", "--port", "8000", "--workers", "0"), check_commands
    ),
    "serving on another port than published": (
        _web_command("--host", "0.0.0.0", "--port", "8001"), check_commands
    ),
    "an unknown queue": (
        _set("worker-sampling", "command", ["rankloop", "worker", "--queues", "gpu"]),
        check_commands,
    ),
    "migrations that do not wait": (
        _set("migrate", "command", ["rankloop", "db", "upgrade"]), check_commands
    ),
    "two services build the image": (_two_builders, check_one_build_per_image),
    "an empty HF_TOKEN": (_empty_token, check_no_empty_credentials),
    "no env_file": (_no_env_file, check_env_file),
    "a GPU in the default file": (_gpu, check_no_gpu),
    "a worker killed after 10 s": (_set("worker-training", "stop_grace_period", "10s"),
                                   check_stop_grace),
    "the port on every interface": (_set("web", "ports", ["8000:8000"]), check_ports_and_proxy),
    "no log rotation": (_set("redis", "logging", {}), check_logging),
}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_the_checks_catch_a_broken_copy(broken: str) -> None:
    change, check = BROKEN[broken]
    check(load())  # the real file passes
    with pytest.raises(AssertionError):
        check(_mutated(change))


@pytest.mark.parametrize(
    ("service", "test", "port", "tool"),
    [
        ("redis", ["CMD", "false"], 6379, "redis-cli"),
        ("redis", ["CMD", "true"], 6379, "redis-cli"),
        ("redis", ["CMD", "redis-cli", "ping"], 6379, "redis-cli"),  # names no port
        ("postgres", ["CMD-SHELL", "pg_isready -U rankloop -d rankloop"], 5432, "pg_isready"),
        ("postgres", ["CMD", "true", "-h", "127.0.0.1", "-p", "5432"], 5432, "pg_isready"),
    ],
)
def test_the_healthcheck_checks_catch_ones_that_test_nothing(
    service: str, test: list[str], port: int, tool: str
) -> None:
    running(port, tool)
    check = check_redis_healthcheck if service == "redis" else check_postgres_healthcheck
    with pytest.raises(AssertionError):
        check(_mutated(_healthcheck(service, test)), run_on_port(port))


# ---------------------------------------------------------------------------------------------
# Compose itself, where it is installed


def test_docker_compose_config_accepts_the_files(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.skip(f"no `docker compose` plugin here: {version.stderr.strip()[:200]}")
    env = {**os.environ, **REQUIRED_ENV, "COMPOSE_DISABLE_ENV_FILE": "1"}
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(GPU_COMPOSE)]):
        result = subprocess.run(
            [docker, "compose", "--project-directory", str(ROOT), *files, "config", "--quiet"],
            capture_output=True, text=True, env=env, timeout=60,
        )
        assert result.returncode == 0, result.stderr
