"""The `rankloop` command line: database, users, projects, web server, workers, demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from app.ids import MAX_ID

if TYPE_CHECKING:
    from app.errors import AppError

app = typer.Typer(
    help="RankLoop: rank samples, train a reward model, run PPO, repeat.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
round_app = typer.Typer(help="Training rounds: start, follow, cancel.", no_args_is_help=True)
app.add_typer(round_app, name="round")
models_app = typer.Typer(help="Models: build the offline tiny model.", no_args_is_help=True)
app.add_typer(models_app, name="models")
projects_app = typer.Typer(help="Projects: create one, change its settings.", no_args_is_help=True)
app.add_typer(projects_app, name="projects")
prompts_app = typer.Typer(help="Prompts: import a file into a project.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]Error:[/red] {message}")
    return typer.Exit(code=1)


@contextmanager
def _app_errors() -> Iterator[None]:
    """An expected failure (AppError) ends the command with its message, as one error line."""
    from app.errors import AppError

    try:
        yield
    except AppError as exc:
        raise _fail(exc.message) from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to keep retrying while the database refuses connections "
            "(e.g. a PostgreSQL container on its first start); 0 tries once.",
        ),
    ] = 0,
) -> None:
    """Apply migrations up to REVISION (creates the SQLite file when needed)."""
    from alembic.util import CommandError

    from app import migrate
    from app.config import get_settings

    try:
        migrate.wait_for_database(get_settings().effective_database_url, timeout=wait)
    except TimeoutError as exc:
        raise _fail(str(exc)) from None
    try:
        migrate.upgrade(revision)
    except CommandError as exc:
        raise _fail(str(exc)) from None
    url = get_settings().effective_database_url
    console.print(
        f"Database at revision [bold]{migrate.current_revision()}[/bold] ({_redact(url)})"
    )


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")],
) -> None:
    """Revert migrations down to REVISION."""
    from alembic.util import CommandError

    from app import migrate

    try:
        migrate.downgrade(revision)
    except CommandError as exc:
        raise _fail(str(exc)) from None
    console.print(f"Database at revision {migrate.current_revision()}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from app import migrate

    console.print(migrate.current_revision() or "empty (run `rankloop db upgrade`)")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin or annotator.")] = "annotator",
    password: Annotated[
        str | None,
        typer.Option(help="Password (asked for when omitted; use --generate for a random one)."),
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate and print a password.")] = False,
    display_name: Annotated[str, typer.Option(help="Name shown in the app.")] = "",
) -> None:
    """Create a user with role admin or annotator."""
    from app.accounts import service
    from app.db import session_scope
    from app.security import generate_password

    if generate:
        password = generate_password()
    elif password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _app_errors(), session_scope() as session:
        user = service.create_user(
            session,
            username=username,
            password=password,
            role=role,
            display_name=display_name,
        )
        user_id = user.id
    console.print(f"Created {role} [bold]{username}[/bold] (id {user_id})")
    if generate:
        console.print(f"Password (shown once): [bold]{password}[/bold]")


@users_app.command("list")
def users_list() -> None:
    """List users with their role and status."""
    from rich.table import Table

    from app.accounts import repository
    from app.db import session_scope

    table = Table("id", "username", "role", "active")
    with session_scope(readonly=True) as session:
        for user in repository.list_users(session):
            table.add_row(str(user.id), user.username, user.role.value, str(user.active))
    console.print(table)


def _usage_error(exc: AppError, options: dict[str, str]) -> typer.BadParameter:
    """An InvalidInput about a setting, as a usage error naming the option that set it."""
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    return typer.BadParameter(exc.message, param_hint=options.get(str(field)))


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Option(help="Project name (unique).")],
    base_model: Annotated[
        str | None,
        typer.Option(help="Hub id, local directory or 'tiny' (default: the default_base_model)."),
    ] = None,
    samples_per_prompt: Annotated[
        int | None,
        typer.Option("--samples-per-prompt", "-K", help="Samples per task, 4-9 (default 4)."),
    ] = None,
    annotations_per_task: Annotated[
        int | None, typer.Option(help="Rankings each task needs (default 1).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Another setting of the project form as NAME=VALUE, e.g. temperature=0.7, "
            "min_open_tasks=0, guidelines=... (repeatable).",
        ),
    ] = None,
) -> None:
    """Create a project as the admin form does (same checks, same defaults); prints its id."""

    from app.config import get_settings
    from app.db import session_scope
    from app.errors import AppError, InvalidInput
    from app.projects import service

    options = _setting_options()
    options.update(
        name="--name",
        base_model="--base-model",
        samples_per_prompt="--samples-per-prompt",
        annotations_per_task="--annotations-per-task",
    )
    own_options = {
        "samples_per_prompt": samples_per_prompt,
        "annotations_per_task": annotations_per_task,
    }
    settings = _form_settings(
        set_ or [],
        options,
        settable=set(_setting_options()),
        extra={k: str(v) for k, v in own_options.items() if v is not None},
    )
    try:
        with session_scope() as session:
            project = service.create_project(
                session,
                name=name,
                base_model=get_settings().default_base_model if base_model is None else base_model,
                **settings,
            )
            project_id = project.id
    except InvalidInput as exc:
        raise _usage_error(exc, options) from None
    except AppError as exc:
        raise _fail(exc.message) from None
    console.print(f"Created project [bold]{name}[/bold] (id {project_id})")


def _setting_options() -> dict[str, str]:
    from app.projects.schemas import ProjectForm

    return {key: f"--set {key}" for key in set(ProjectForm.model_fields) - {"name", "base_model"}}


def _form_settings(
    items: list[str],
    options: dict[str, str],
    *,
    settable: set[str],
    extra: dict[str, str] | None = None,
) -> dict[str, object]:
    """NAME=VALUE items read as the admin form reads its fields (same names, same checks)."""
    from pydantic import ValidationError

    from app.projects.schemas import ProjectForm

    given: dict[str, object] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise typer.BadParameter(f"takes NAME=VALUE, got {item!r}", param_hint="--set")
        if key not in settable:
            hint = " (it has its own option)" if key in options else ""
            raise typer.BadParameter(
                f"unknown project setting {key!r}{hint}; settings: {', '.join(sorted(settable))}",
                param_hint="--set",
            )
        given[key] = value
    given.update(extra or {})
    try:
        form = ProjectForm.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        raise typer.BadParameter(error["msg"], param_hint=options.get(key)) from None
    return {k: v for k, v in form.settings().items() if k in given}


@projects_app.command("set")
def projects_set(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="A setting of the project form as NAME=VALUE, e.g. selection=active, "
            "uniform_share=0.2, reliability_weighting=false, gold_rate=0.1 (repeatable).",
        ),
    ],
) -> None:
    """Change a project's settings as the admin form does: all are checked before any changes."""
    from app.admin.service import save_settings
    from app.db import session_scope
    from app.errors import AppError, InvalidInput

    options = _setting_options()
    settings = _form_settings(set_, options, settable=set(options))
    try:
        with session_scope() as session:
            found = save_settings(
                session, project_id=_project_id(session, project), settings=settings
            )
            changed = ", ".join(f"{k}={getattr(found, k)!r}" for k in settings)
    except InvalidInput as exc:
        raise _usage_error(exc, options) from None
    except AppError as exc:
        raise _fail(exc.message) from None
    console.print(f"Project {project}: {changed}")


@prompts_app.command("import")
def prompts_import(
    project: Annotated[str, typer.Option(help="Project id or name.")],
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON Lines, a JSON array or CSV/TSV with a header row, optionally gzipped.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(help="plain, alpaca, dolly or oasst2 (default: detected from the records)."),
    ] = None,
    turns: Annotated[
        str,
        typer.Option(
            help="OASST2 trees: first (each tree's first user message) or all (every user "
            "message with an assistant reply, the turns above it as the conversation)."
        ),
    ] = "first",
    lang: Annotated[
        str,
        typer.Option(help="OASST2 trees: language codes to keep, e.g. en,de (default: all)."),
    ] = "",
    demonstrations: Annotated[
        bool,
        typer.Option(
            "--demonstrations",
            help="Also add the file's answers (OASST2 best-ranked replies, Alpaca output, Dolly "
            "response, TRL completion) as demonstrations of their prompts, for SFT.",
        ),
    ] = False,
) -> None:
    """Import prompts as the admin upload does: bad records are listed and skipped, prompts
    already in the project skipped (and, with --demonstrations, the answers the file carries
    added as demonstrations, deduplicated like a demonstration import)."""
    from rich.markup import escape

    from app.db import session_scope
    from app.projects import imports
    from app.projects.demonstration_store import add_answers
    from app.projects.prompt_import import Oasst2Options, parse_prompts

    with _app_errors():
        oasst2 = Oasst2Options.of(turns, lang, default=Oasst2Options())
        parsed = parse_prompts(file.read_bytes(), file.name, format, oasst2)
    for error in parsed.errors[:20]:
        where = f"line {error.line}" if error.line else "file"
        console.print(f"  [yellow]{where}:[/yellow] {escape(error.message)}")
    if len(parsed.errors) > 20:
        console.print(f"  … and {len(parsed.errors) - 20} more errors")
    if parsed.oasst2 is not None:
        o = parsed.oasst2
        console.print(
            f"OASST2, {o.setting.label}: {o.first_turns} prompts with --turns first, "
            f"{o.every_turn} with --turns all; user turns left out: {o.deleted} deleted or "
            f"rejected, {o.other_language} in another language, {o.unanswered} unanswered"
        )
    if not parsed.prompts:
        raise _fail(f"{file.name} has no prompts to import")
    kept = None
    with _app_errors(), session_scope() as session:
        project_id = _project_id(session, project)
        added = imports.import_prompts(session, project_id=project_id, prompts=parsed.prompts)
        imported, in_project, repeated = len(added.added), added.in_project, added.repeated
        too_long, budget = len(added.too_long), added.budget
        if demonstrations:
            answers = add_answers(session, project_id=project_id, prompts=parsed.prompts)
            kept = len(answers.added)
    console.print(
        f"{file.name} ({parsed.format}): imported [bold]{imported}[/bold]; skipped "
        f"{in_project} already in the project and {repeated} repeated in the file; "
        f"{len(parsed.errors)} bad record{'' if len(parsed.errors) == 1 else 's'} left out"
    )
    if kept is not None:
        console.print(
            f"Added [bold]{kept}[/bold] demonstration{'' if kept == 1 else 's'} from the file's "
            "answers (those already in the project or repeated skipped)"
        )
    if too_long:
        console.print(
            f"[yellow]{too_long} prompt{'' if too_long == 1 else 's'} longer than {budget} tokens"
            " (the model's context less max new tokens): sampled shortened (oldest turns first) or "
            "skipped, as the project's long_prompts setting says[/yellow]"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Web worker processes.")] = 1,
) -> None:
    """Run the web app (uvicorn)."""
    import uvicorn

    from app.config import get_settings

    uvicorn.run(
        "rankloop.web:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        # None: uvicorn's FORWARDED_ALLOW_IPS, else 127.0.0.1 (RANKLOOP_FORWARDED_ALLOW_IPS).
        forwarded_allow_ips=get_settings().forwarded_allow_ips,
        log_level="info",
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: sampling,training,judging.")
    ] = "sampling,training,judging",
    name: Annotated[str, typer.Option(help="Worker name (default: rankloop-QUEUES@host).")] = "",
    loglevel: Annotated[
        str, typer.Option(help="Level of the log file (<data dir>/logs/rankloop.log).")
    ] = "info",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            help="Log to the file only, errors too (the demo's worker: the demo has the console).",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Start nothing: exit 0 when the worker this command would start on this host "
            "has written its heartbeat within the last minute, else 1 (a container healthcheck; "
            "the heartbeat goes on while a task runs).",
        ),
    ] = False,
) -> None:
    """Run a Celery worker on the given queues (one task at a time: training owns the device)."""
    from app.jobs import QUEUES
    from worker.threads import configure_torch_threads

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown or not wanted:
        raise _fail(f"Unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    node = name or f"rankloop-{'-'.join(wanted)}@%h"
    if check:
        from celery.utils.nodenames import host_format

        from app.health import heartbeat_is_fresh

        hostname = host_format(node)
        if not heartbeat_is_fresh(hostname):
            raise _fail(f"no recent heartbeat from {hostname}")
        console.print(f"{hostname} is alive")
        return
    from app.logs import setup_logging

    log = setup_logging(console=not quiet, level=loglevel, libraries=True)
    if not quiet:
        console.print(f"Worker log: {log}", soft_wrap=True)
    configure_torch_threads(processes=1)  # the solo pool runs tasks in this one process
    from worker.celery_app import celery_app

    celery_app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(wanted),
            "--pool",
            "solo",
            "--loglevel",
            loglevel,
            "-n",
            node,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock.connect_ex((host, port)) != 0


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the next free one is used if taken).")] = 8000,
    with_worker: Annotated[bool, typer.Option(help="Start a worker beside the web server.")] = True,
    simulate: Annotated[
        bool,
        typer.Option(
            help="Run the whole loop here with simulated annotators, print each round, exit."
        ),
    ] = False,
    # The defaults of --simulate are LoopSettings' (a test keeps them equal; importing the loop
    # here would slow every command by a second).
    rounds: Annotated[int, typer.Option(help="Rounds to run with --simulate.", min=1)] = 2,
    preference: Annotated[
        str,
        typer.Option(
            help="With --simulate: what the annotators prefer, as `simulate --preference` "
            "(also keywords:W1+W2, avoid:W1+W2, keywords_length:W1+W2@N, opening:W1+W2)."
        ),
    ] = "length:30",
    noise: Annotated[
        float,
        typer.Option(help="With --simulate: Bradley-Terry temperature of the annotators.", min=0),
    ] = 0.1,
    annotators: Annotated[
        int, typer.Option(help="With --simulate: simulated annotators.", min=1, max=64)
    ] = 3,
    seed: Annotated[
        int, typer.Option(help="With --simulate: seed of the run.", min=0, max=MAX_ID)
    ] = 0,
    judge: Annotated[
        str | None,
        typer.Option(
            help="With --simulate: pure RLAIF, a model judge ranks in place of the annotators "
            "and rounds train on its rankings only: simulated:AGREEMENT (right on that share of "
            "pairs of --preference, e.g. simulated:0.8) or hf:PATH (a local model, scoring by "
            "log-probabilities)."
        ),
    ] = None,
) -> None:
    """Create the database, demo users and project; start the web server and a worker."""
    import uvicorn

    from app import migrate
    from app.config import get_settings
    from app.db import session_scope
    from app.demo import follow_preparation, prepare_demo, start_demo_sampling
    from app.logs import setup_logging

    if judge is not None and not simulate:
        raise _fail("--judge runs with --simulate")
    if simulate:  # a bad preference or judge is refused before anything is created
        from app.simulation.preferences import load_preference

        try:
            load_preference(preference)
            if judge is not None:
                from rankloop.simulation import judge_form

                judge_form(judge, preference=preference, seed=seed)
        except (ValueError, TypeError) as exc:
            raise _fail(str(exc)) from None
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # libraries: the web app reads tokenizers (prompt lengths), the simulated loop loads models
    log = setup_logging(libraries=True)
    console.print(f"Data directory: {settings.data_dir}")
    migrate.upgrade("head")
    if simulate:  # the human demo's accounts and passwords stay as they are
        _simulated_demo(
            rounds,
            preference=preference,
            noise=noise,
            annotators=annotators,
            seed=seed,
            judge=judge,
        )
        return
    with session_scope() as session:
        accounts = prepare_demo(session, settings)
        job_id = start_demo_sampling(session, accounts.project_id) if with_worker else None
    while not _port_free(host, port):
        port += 1
    url = f"http://{host}:{port}/login"
    console.rule("RankLoop demo")
    console.print(f"Open [bold]{url}[/bold]")
    console.print(f"  admin     / [bold]{accounts.admin_password}[/bold]")
    console.print(f"  annotator / [bold]{accounts.annotator_password}[/bold]")
    console.print("Passwords are shown once; run `rankloop demo` again for new ones. Ctrl-C stops.")
    console.print(f"Log: {log}", soft_wrap=True)
    worker_proc = None
    stop_following = threading.Event()
    if with_worker:
        with log.open("ab") as worker_output:  # the worker's console is the log: see app/logs.py
            worker_proc = subprocess.Popen(
                [sys.executable, "-m", "rankloop.cli", "worker", "--loglevel", "info", "--quiet"],
                env=os.environ.copy(),
                stdout=worker_output,
                stderr=subprocess.STDOUT,
            )
        _enqueue_demo_preparation(accounts.project_id, job_id)
        threading.Thread(
            target=follow_preparation,
            args=(accounts.project_id, job_id, _say),
            kwargs={"log": log, "stop": stop_following},
            name="demo-preparation",
            daemon=True,
        ).start()
    try:
        # log_config=None: uvicorn's records go to the log file (app/logs.py), errors as one line
        uvicorn.run(
            "rankloop.web:create_app",
            factory=True,
            host=host,
            port=port,
            log_config=None,
            log_level="info",
            access_log=False,
        )
    finally:
        stop_following.set()
        if worker_proc is not None:
            worker_proc.send_signal(signal.SIGTERM)
            try:
                worker_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker_proc.kill()


@models_app.command("make-tiny")
def models_make_tiny(
    directory: Annotated[Path, typer.Argument(help="Where to save the model and tokenizer.")],
    steps: Annotated[int, typer.Option(help="Training steps on the shipped corpus.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Build a small GPT-2 and tokenizer offline; load it with from_pretrained(DIRECTORY)."""
    from rich.progress import Progress

    from app.logs import quiet_progress_bars

    quiet_progress_bars()  # transformers' "Writing model shards" bar under our own
    from worker.training.tiny_model import make_tiny_model

    with Progress(console=console) as bar:
        task = bar.add_task("training tiny model", total=steps)
        make_tiny_model(
            directory,
            steps=steps,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"Saved to {directory}")


def _project_id(session: object, project: str) -> int:
    from app.projects import repository

    found = (
        repository.get_project(session, int(project))  # type: ignore[arg-type]
        if project.isascii() and project.isdigit() and int(project) <= MAX_ID
        else repository.get_project_by_name(session, project)  # type: ignore[arg-type]
    )
    if found is None:
        raise _fail(f"No project {project!r}")
    return found.id


@app.command()
def sample(
    project: Annotated[str, typer.Option(help="Project id or name.")],
    policy_version: Annotated[
        int | None,
        typer.Option(help="Version number (default: the current one).", min=1, max=MAX_ID),
    ] = None,
    prompts: Annotated[
        int | None, typer.Option(help="At most this many prompts.", min=1, max=MAX_ID)
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the job (default: derived from its id).", min=0, max=MAX_ID),
    ] = None,
) -> None:
    """Generate samples and ranking tasks in this process (no Celery needed): for the prompts
    without a task for the version, else further tasks for those with the fewest."""
    from rich.progress import Progress

    from app.db import session_scope
    from app.sampling import service
    from worker.jobs.sampling import run_sampling_job
    from worker.threads import configure_torch_threads

    with _app_errors(), session_scope() as session:
        job = service.start_sampling(
            session,
            project_id=_project_id(session, project),
            version_number=policy_version,
            prompt_limit=prompts,
            seed=seed,
            enqueue=False,
        )
        job_id, prompts_total = (job.id, job.prompts_total) if job else (None, 0)
    if job_id is None:
        console.print("No active prompt to sample: running jobs hold them all, or there are none.")
        return
    from app.logs import quiet_progress_bars

    quiet_progress_bars()  # transformers' "Loading weights" bar under our own
    configure_torch_threads()
    with Progress(console=console) as bar:
        task = bar.add_task(f"sampling job {job_id}", total=None)
        created = run_sampling_job(
            job_id, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    skipped = prompts_total - created
    console.print(
        f"Sampling job {job_id}: {created} ranking tasks created"
        + (f"; {skipped} prompts skipped: the model repeated itself" if skipped else "")
    )


@app.command("train-reward-model")
def train_reward_model(
    project: Annotated[str, typer.Option(help="Project id or name.")],
    epochs: Annotated[int | None, typer.Option(help="Passes over the rankings.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="AdamW learning rate.")] = None,
    heldout_fraction: Annotated[
        float | None, typer.Option(help="Share of prompts held out for accuracy.")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens of prompt + response.")] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Model under the reward head (default: the project's).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the split and the initialisation.", min=0, max=MAX_ID)
    ] = 0,
) -> None:
    """Train and register a reward model on the project's rankings in this process.

    The same code as a round's reward-model stage (snapshot, K-way loss, normalisation);
    defaults are the round form's.
    """
    from datetime import UTC, datetime

    from pydantic import ValidationError
    from rich.progress import Progress

    from app.db import session_scope
    from app.errors import AppError
    from app.rounds.schemas import RewardModelSettings
    from worker.jobs.reward_model import train_project_reward_model

    given = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "heldout_fraction": heldout_fraction,
        "max_length": max_length,
        "base_model": base_model,
    }
    try:
        settings = RewardModelSettings.model_validate(
            {k: v for k, v in given.items() if v is not None}
        )
    except ValidationError as exc:
        fields = "; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(fields.replace("_", "-")) from None
    with session_scope(readonly=True) as session:
        project_id = _project_id(session, project)
    with Progress(console=console) as bar:
        task = bar.add_task("reward model", total=None)
        try:
            run = train_project_reward_model(
                project_id,
                settings,
                seed=seed,
                name=f"reward model (CLI) {datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}",
                progress=lambda step, total: bar.update(task, completed=step, total=total),
            )
        except AppError as exc:
            raise _fail(exc.message) from None
        except ValueError as exc:  # too few rankings
            raise _fail(str(exc)) from None
    for epoch in run.summary["epochs"]:
        figures = ", ".join(
            f"{k} {v:.3f}" for k, v in epoch.items() if k != "epoch" and isinstance(v, float)
        )
        console.print(f"  epoch {epoch.get('epoch')}: {figures}")
    accuracy = run.summary["heldout_accuracy"]
    console.print(
        f"Reward model version {run.number} registered (snapshot {run.snapshot_id}, "
        f"{run.summary['n_train']} training rankings); held-out pairwise accuracy "
        + (f"{accuracy:.3f}" if accuracy is not None else "n/a")
    )


def _parse_settings(items: list[str]) -> dict[str, object]:
    """--set ppo.steps=4 --set beta=0.2 → nested dict (values stay strings; pydantic coerces)."""
    from app.rounds.pages import form_to_config

    pairs: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise _fail(f"--set takes NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if key.strip() == "type":
            raise _fail("the round type is --type, not --set type=...")
        pairs[key.strip()] = value.strip()
    with _app_errors():
        return form_to_config(pairs)


def _round_types_help() -> str:
    """The built-in round types, as the registry lists them (`app.rounds.types.BUILTIN`, its
    source; `app.rounds.registry` itself loads the ORM, seconds on every command)."""
    from app.rounds.types import BUILTIN

    return "The round type: " + ", ".join(spec.name for spec in BUILTIN) + "."


_ROUND_TYPES_HELP = _round_types_help()


@round_app.command("start")
def round_start(
    project: Annotated[str, typer.Option(help="Project id or name.")],
    type: Annotated[str, typer.Option(help=_ROUND_TYPES_HELP)] = "reward_ppo",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config value NAME=VALUE, e.g. ppo.steps=4 (repeatable)."),
    ] = None,
    in_process: Annotated[
        bool, typer.Option(help="Run every stage here instead of sending it to the workers.")
    ] = False,
) -> None:
    """Start a round; by default the workers run it (follow it on the round page)."""
    from app.db import session_scope
    from app.errors import AppError
    from app.rounds import service

    config = _parse_settings(set_ or [])
    try:
        with session_scope() as session:
            training_round = service.start_round(
                session,
                project_id=_project_id(session, project),
                round_type=type,
                config=config,
                enqueue=not in_process,
            )
            round_id, number = training_round.id, training_round.number
    except AppError as exc:
        details = f" {exc.details}" if exc.details else ""
        raise _fail(exc.message + details) from None
    console.print(f"Round {number} started (id {round_id}); page: /admin/rounds/{round_id}")
    if in_process:
        from app.rounds import registry
        from worker.jobs.rounds import run_round

        try:
            run_round(round_id, registry.get(type).stage_names[0])
        except Exception:  # recorded on the round (state failed, error); shown just below
            _print_round(round_id)
            raise typer.Exit(code=1) from None
        _print_round(round_id)


def _print_round(round_id: int) -> None:
    from app.db import session_scope
    from app.rounds import service

    with session_scope(readonly=True) as session:
        training_round = service.require_round(session, round_id)
        console.print(
            f"Round {training_round.number}: [bold]{training_round.state.value}[/bold] "
            f"(stage {training_round.progress.get('stage')}, step "
            f"{training_round.progress.get('step')}/{training_round.progress.get('total')})"
        )
        for key in ("reward_model_summary", "gate"):
            if key in training_round.metrics:
                console.print(f"  {key}: {training_round.metrics[key]}")
        if training_round.error:
            console.print(f"[red]{training_round.error}[/red]")


@round_app.command("status")
def round_status(
    round_id: Annotated[int, typer.Argument(help="Round id.", min=1, max=MAX_ID)],
) -> None:
    """Print a round's state, progress and results."""
    with _app_errors():
        _print_round(round_id)


@round_app.command("cancel")
def round_cancel(
    round_id: Annotated[int, typer.Argument(help="Round id.", min=1, max=MAX_ID)],
) -> None:
    """Ask a round to stop (a running stage stops between steps)."""
    from app.db import session_scope
    from app.rounds import service

    with _app_errors(), session_scope() as session:
        service.cancel_round(session, round_id=round_id)
    console.print(f"Round {round_id}: cancel requested")


def _simulated_demo(
    rounds: int,
    *,
    preference: str,
    noise: float,
    annotators: int,
    seed: int,
    judge: str | None = None,
) -> None:
    """`demo --simulate`: sample, let simulated annotators rank, train, repeat; print figures."""
    from app.config import get_settings
    from app.db import session_scope
    from rankloop.simulation import (
        LOOP_JUDGE_PROJECT,
        LOOP_PROJECT,
        LoopSettings,
        RoundReport,
        loop_project,
        run_loop,
    )
    from worker.policies import ensure_tiny_model
    from worker.threads import configure_torch_threads

    if rounds < 1:
        raise _fail("--rounds must be at least 1")
    from rich.markup import escape

    # The libraries' warnings and progress bars go to the log file (`demo` set it up).
    settings = LoopSettings(
        rounds=rounds,
        preference=preference,
        noise=noise,
        annotators=annotators,
        seed=seed,
        judge=judge,
    )
    configure_torch_threads(threads=settings.torch_threads)  # see LoopSettings.torch_threads
    with console.status("Building the tiny model (once)…"):
        ensure_tiny_model()
    if judge is None:
        console.print(
            f"Simulated annotators prefer [bold]{settings.preference}[/bold] "
            f"({settings.annotators} of them, noise {settings.noise})"
        )
    else:
        console.print(
            f"A judge ([bold]{escape(judge)}[/bold]) ranks in place of people; the truth is "
            f"[bold]{settings.preference}[/bold]; rounds train on its rankings only"
        )
    started = time.monotonic()

    def show(report: RoundReport) -> None:
        score = f"preference score {report.score.mean:+.3f}"
        seconds = ", ".join(f"{k} {v:.0f} s" for k, v in report.stage_seconds.items())
        timing = escape(f"[{seconds}]")
        if report.number == 0:
            console.print(f"Start (version {report.score.version_number}): {score}  {timing}")
            return
        change = "no new version"
        if report.change_interval is not None:
            low, high = report.change_interval
            change = f"change from version {report.parent_number} 95% CI {low:+.3f} to {high:+.3f}"
        accuracy = "-" if report.rm_accuracy is None else f"{report.rm_accuracy:.2f}"
        if report.label_ceiling is not None:
            accuracy += f" (the labels' ceiling {report.label_ceiling:.2f})"
        kl = "-" if report.kl is None else f"{report.kl:.2f}"
        console.print(
            f"Round {report.number} [bold]{report.state}[/bold] (version "
            f"{report.score.version_number}, {report.rankings} rankings): reward-model held-out "
            f"accuracy {accuracy}, {score} ({change}), KL {kl}  {timing}"
        )
        if report.error:
            console.print(f"  [yellow]{report.error.splitlines()[-1]}[/yellow]")

    name = LOOP_PROJECT if judge is None else LOOP_JUDGE_PROJECT  # people's project untouched
    with session_scope() as session:
        project_id = loop_project(session, name=name, base_model=get_settings().default_base_model)
    console.print(f"Project [bold]{name}[/bold] (id {project_id})")
    run_loop(project_id, settings, on_round=show)
    console.print(f"Done in {time.monotonic() - started:.0f} s")


def _enqueue_demo_preparation(project_id: int, job_id: int | None) -> None:
    """Model building and sampling are slow: the worker does them while the page is up."""
    from app import jobs

    try:
        jobs.enqueue(jobs.SAMPLING_PREPARE_DEMO, project_id, job_id)
    except Exception as exc:  # the demo still serves pages without samples
        console.print(f"[yellow]Could not queue demo preparation:[/yellow] {exc}")
    time.sleep(0)


def _say(line: str) -> None:
    """A progress line of the demo (no markup: the lines quote errors and prompts)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


# API tokens and policy export (issue 7)

tokens_app = typer.Typer(help="API tokens for /api/v1: create, list, revoke.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
policies_app = typer.Typer(help="Policy versions: export weights.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'training cluster'.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="read, write or read:annotators (repeatable; default: read; "
            "write and read:annotators include read)."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help="Admin username the token acts for (it is revoked if they lose admin)."),
    ] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from app.accounts import repository as accounts
    from app.db import session_scope
    from app.tokens import service

    with _app_errors(), session_scope() as session:
        creator_id = None
        if user is not None:
            found = accounts.get_user_by_username(session, user)
            if found is None or not found.is_admin:
                raise _fail(f"No admin named {user!r}")
            creator_id = found.id
        issued = service.create_token(
            session, name=name, scopes=scope or ["read"], created_by_id=creator_id
        )
        token_id, scopes = issued.token.id, issued.token.scopes
    console.print(f"Created token {token_id} [bold]{name}[/bold] ({', '.join(scopes)})")
    console.print("Token (shown once):")
    typer.echo(issued.secret)


@tokens_app.command("list")
def tokens_list() -> None:
    """List tokens: prefix, scopes, last use, revocation."""
    from rich.table import Table

    from app.db import session_scope
    from app.tokens import service

    table = Table("id", "name", "prefix", "scopes", "created by", "last used", "revoked")
    with session_scope(readonly=True) as session:
        for token, creator in service.list_tokens(session):
            table.add_row(
                str(token.id),
                token.name,
                token.prefix + "…",
                ", ".join(token.scopes),
                creator or "-",
                token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never",
                token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "-",
            )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see tokens list).", min=1, max=MAX_ID)],
) -> None:
    """Revoke a token: requests with it fail from now on."""
    from app.db import session_scope
    from app.tokens import service

    with _app_errors(), session_scope() as session:
        token = service.revoke_token(session, token_id=token_id)
        name = token.name
    console.print(f"Revoked token {token_id} ({name})")


@policies_app.command("export")
def policies_export(
    version: Annotated[
        int,
        typer.Argument(help="Policy version id (or number, with --project).", min=1, max=MAX_ID),
    ],
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")],
    merged: Annotated[
        bool, typer.Option(help="Merge the adapter(s) into the base and write full weights.")
    ] = False,
    project: Annotated[
        str | None, typer.Option(help="Project id or name: VERSION is then its version number.")
    ] = None,
) -> None:
    """Write a policy version to DIRECTORY: the LoRA adapter (PeftModel.from_pretrained) or,
    with --merged, full weights (AutoModelForCausalLM.from_pretrained)."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.export import policies
    from app.models import PolicyVersion
    from worker.policies import load_base

    policies.use_base_loader(load_base)

    with _app_errors():
        with session_scope(readonly=True) as session:
            version_id = version
            if project is not None:
                found = session.scalar(
                    select(PolicyVersion.id).where(
                        PolicyVersion.project_id == _project_id(session, project),
                        PolicyVersion.number == version,
                    )
                )
                if found is None:
                    raise _fail(f"No version {version} in project {project!r}")
                version_id = found
            export = policies.plan_policy_export(session, version_id=version_id, merged=merged)
        with console.status("Merging weights…" if merged else "Copying adapter…"):
            target = policies.write_directory(export, directory)
    console.print(f"Wrote version {export.number} ({export.name}) to {target}")
    console.print(f"Load it with: {export.manifest()['load']}")


# Simulated annotators (issue 6)


@app.command()
def simulate(
    project: Annotated[str, typer.Option(help="Project id or name.")],
    annotators: Annotated[int, typer.Option(help="Simulated annotators (one thread each).")] = 3,
    preference: Annotated[
        str,
        typer.Option(
            help="What they prefer: keyword:WORD, length:WORDS, sentiment, a family's spec "
            "(keywords:W1+W2, keywords_length:W1+W2@WORDS, avoid:W1+W2, "
            "sentiment_words:P1+P2/N1+N2, opening:W1+W2), or module:function."
        ),
    ] = "sentiment",
    url: Annotated[
        str | None, typer.Option(help="Web app URL (default: the serve_url setting).")
    ] = None,
    max_tasks: Annotated[
        int | None, typer.Option(help="Stop after this many rankings (default: all tasks).")
    ] = None,
    noise: Annotated[
        float, typer.Option(help="Bradley-Terry temperature; 0 ranks exactly by preference.")
    ] = 0.5,
    bias: Annotated[
        float, typer.Option(help="Std. dev. of each annotator's liking for longer answers.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the annotators' choices.")] = 0,
    crowd: Annotated[
        str | None,
        typer.Option(
            help="Mix kinds of annotators: 'mixed' (60:1,30:3,10:reversed) or "
            "SHARE:NOISE_FACTOR|reversed,… — shares of people at multiples of --noise, or "
            "ranking by the negated preference. Default: everyone at --noise."
        ),
    ] = None,
) -> None:
    """Rank a project's tasks with scripted annotators who log in over HTTP like people do."""
    from app.db import session_scope
    from app.simulation.annotators import crowd_models, parse_crowd, run_annotators
    from app.simulation.preferences import load_preference
    from app.simulation.service import ensure_simulated_annotators

    try:
        prefers = load_preference(preference)
        groups = None if crowd is None else parse_crowd(crowd)
    except (ValueError, ImportError, AttributeError) as exc:
        raise _fail(str(exc)) from None
    with _app_errors(), session_scope() as session:
        project_id = _project_id(session, project)
        logins = ensure_simulated_annotators(session, project_id=project_id, count=annotators)
    from app.config import get_settings

    target = url or get_settings().serve_url
    people = (
        None
        if groups is None
        else crowd_models(annotators, groups, noise=noise, bias=bias, seed=seed)
    )
    with console.status(f"{annotators} simulated annotators ranking at {target}…"):
        result = run_annotators(
            target,
            logins,
            prefers,
            project_id=project_id,
            noise=noise,
            bias=bias,
            seed=seed,
            max_tasks=max_tasks,
            people=people,
        )
    for i, person in enumerate(result.annotators):
        kind = ""
        if people is not None:
            kind = " (reversed)" if people[i].reversed else f" (noise {people[i].temperature:g})"
        console.print(f"  {person.username}: {person.submitted} rankings{kind}")
    console.print(f"Submitted [bold]{result.submitted}[/bold] rankings")
    if result.errors:
        raise _fail("; ".join(result.errors))


# AI judges (issue 23)

judges_app = typer.Typer(
    help="AI judges: model annotators that rank a project's tasks (RLAIF).", no_args_is_help=True
)
app.add_typer(judges_app, name="judges")


def _option_values(items: list[str]) -> dict[str, object]:
    """--option agreement=0.8 --option preference=length:30 → {"agreement": 0.8, ...}
    (numbers and true/false read as JSON, the rest kept as text)."""
    import json

    values: dict[str, object] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"takes NAME=VALUE, got {item!r}", param_hint="--option")
        try:
            values[key.strip()] = json.loads(value)
        except ValueError:
            values[key.strip()] = value
    return values


@judges_app.command("add")
def judges_add(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    name: Annotated[str, typer.Option(help="Shown wherever it ranked.")],
    backend: Annotated[
        str, typer.Option(help="hf (a local causal LM), openai (an endpoint) or simulated.")
    ],
    model: Annotated[str, typer.Option(help="Hub id or directory (hf); the served model name.")],
    base_url: Annotated[
        str | None, typer.Option(help="openai: the endpoint, e.g. http://127.0.0.1:8000/v1.")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="NAME of the environment variable holding the key (never the key)."),
    ] = None,
    method: Annotated[str, typer.Option(help="listwise, pairwise or logprob.")] = "listwise",
    overlap: Annotated[
        str, typer.Option(help="all: every open task; unreached: tasks no person has reached.")
    ] = "all",
    share: Annotated[float, typer.Option(help="Share of eligible tasks it judges (0-1].")] = 1.0,
    concurrency: Annotated[int, typer.Option(help="Tasks judged at once.")] = 1,
    principle: Annotated[
        list[str] | None, typer.Option(help="A principle of its prompt (repeatable).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            help="Backend extra as NAME=VALUE (repeatable): max_new_tokens=64, temperature=0; "
            "simulated: preference=length:30, agreement=0.8, seed=0."
        ),
    ] = None,
    agreement_floor: Annotated[
        float | None,
        typer.Option(help="Absolute floor: paused below this agreement with the consensus."),
    ] = None,
    relative_floor: Annotated[
        float | None,
        typer.Option(
            help="Paused when significantly less reliable than this share of a typical person "
            "(default 0.5)."
        ),
    ] = None,
) -> None:
    """Add a judge to a project, as the admin page does; it starts on the project's queue."""
    from pydantic import ValidationError

    from app.db import session_scope
    from app.judges import service
    from app.judges.schemas import JudgeCreate

    given: dict[str, object] = {
        "name": name,
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "method": method,
        "overlap": overlap,
        "share": share,
        "concurrency": concurrency,
        "principles": principle or [],
        "options": _option_values(option or []),
    }
    if agreement_floor is not None:
        given["agreement_floor"] = agreement_floor
    if relative_floor is not None:
        given["relative_floor"] = relative_floor
    try:
        data = JudgeCreate.model_validate(given)
    except ValidationError as exc:
        fields = "; ".join(
            (f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise _fail(fields) from None
    with _app_errors(), session_scope() as session:
        project_id = _project_id(session, project)
        judge = service.create_judge(session, project_id=project_id, data=data, created_by_id=None)
        judge_id = judge.id
    console.print(f"Added judge [bold]{name}[/bold] (id {judge_id}) to project {project_id}")


@judges_app.command("list")
def judges_list(project: Annotated[str, typer.Argument(help="Project id or name.")]) -> None:
    """The project's judges: what each ranked, skipped and has left, and its state."""
    from app.db import session_scope
    from app.judges import service

    with _app_errors(), session_scope(readonly=True) as session:
        project_id = _project_id(session, project)
        rows = service.list_judges(session, project_id=project_id)
        judges = {j.id: f"{j.name} ({j.backend} {j.model}, {j.method})" for j in rows}
        progress = {p.judge_id: p for p in service.judge_progress(session, project_id=project_id)}
    if not judges:
        console.print("No judges")
    for judge_id, what in judges.items():
        p = progress.get(judge_id)
        line = f"{judge_id}  {what}"
        if p is not None:
            state = p.state + (f" ({p.paused_reason})" if p.paused_reason else "")
            line += f": {state}; {p.ranked} ranked, {p.skipped} skipped, {p.remaining} left"
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@judges_app.command("pause")
def judges_pause(
    judge_id: Annotated[int, typer.Argument(help="Judge id.", min=1, max=MAX_ID)],
    reason: Annotated[str, typer.Option(help="Shown with the judge.")] = "Paused by an admin",
) -> None:
    """Stop a judge leasing tasks (a run in progress stops after the task in hand)."""
    from app.db import session_scope
    from app.judges import service

    with _app_errors(), session_scope() as session:
        service.pause_judge(session, judge_id=judge_id, reason=reason)
    console.print(f"Judge {judge_id}: paused")


@judges_app.command("resume")
def judges_resume(
    judge_id: Annotated[int, typer.Argument(help="Judge id.", min=1, max=MAX_ID)],
) -> None:
    """Let a paused judge work again (a judging run is sent to the workers)."""
    from app.db import session_scope
    from app.judges import service

    with _app_errors(), session_scope() as session:
        service.resume_judge(session, judge_id=judge_id)
    console.print(f"Judge {judge_id}: active")


@judges_app.command("run")
def judges_run(
    judge_id: Annotated[int, typer.Argument(help="Judge id.", min=1, max=MAX_ID)],
    max_tasks: Annotated[
        int | None, typer.Option(help="Stop after this many tasks.", min=1, max=MAX_ID)
    ] = None,
) -> None:
    """Run a judge here (not on a worker) over the tasks it may lease; prints its throughput."""
    from rich.markup import escape

    from app.db import session_scope
    from app.judges import service
    from worker.jobs.judging import run_judge

    with _app_errors(), session_scope(readonly=True) as session:
        service.get_judge(session, judge_id)
    with console.status(f"Judge {judge_id} ranking…"):
        report = run_judge(judge_id, max_tasks=max_tasks)
    console.print(
        f"Judge {judge_id}: [bold]{report.ranked}[/bold] rankings, {report.skipped} skipped, "
        f"{report.position_checks} position checks in {report.seconds:.1f} s "
        f"({report.rankings_per_second:.2f} rankings/s); stopped: {report.stopped}"
    )
    if report.reason:
        console.print(f"  [yellow]{escape(report.reason)}[/yellow]")


def main() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        app()
    except (OperationalError, ProgrammingError) as exc:
        # SQLite: "no such table"; PostgreSQL: UndefinedTable, "relation ... does not exist".
        if "no such table" not in str(exc) and "does not exist" not in str(exc):
            raise
        console.print(
            "[red]Error:[/red] the database has no RankLoop tables (or is behind): "
            "run `rankloop db upgrade` first."
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
