"""Annotation under load: next-task and submit latency, and the most rankings per second.

Against `rankloop serve` on PostgreSQL, over HTTP, with this process as the load generator
(the server runs in its own processes). Projects use K = 9 samples and 3 annotations a task.

    (a) paced:    N simulated annotators, each waiting --think seconds between requests;
                  p50 / p99 of POST /annotate/next and of POST /annotate/tasks/{id}/submit.
    (b) capacity: C annotators with no waiting; accepted rankings per second.

Two clients (--client). `browser` (the default) sends what the ranking page sends: HTMX
requests, the submit as the page's form, answered by the HTML fragment of the next task
leased in the same transaction, so a ranking is one request after the first next-task.
`json` is the simulated annotators' pattern: next-task and submit as two JSON requests.

Afterwards the database is checked: no task ranked more often than required, no annotator
ranking a task twice, every accepted submission stored with its 36 pairs, nothing else stored.
Goals on the 2-core machine: (a) p99 <= 50 ms for each endpoint, (b) >= 150 rankings/s.
Run (b) also prints the CPU time per ranking of the server and of PostgreSQL, and the load
averages: on a shared machine latencies mostly measure the neighbours, CPU time much less.

The annotators speak raw HTTP/1.1 over keep-alive connections on one asyncio loop: a full
client library would spend as much CPU as the server on the 2 shared cores. Sessions are
created in the database (a login's argon2 hash costs ~0.5 s each and is not under test).

    .venv/bin/python -m bench.annotate_load
    .venv/bin/python -m bench.annotate_load --client json
    .venv/bin/python -m bench.annotate_load --workers 1 --paced-seconds 60 --annotators 100
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session

app = typer.Typer(add_completion=False)
T = TypeVar("T")
console = Console()

K = 9
REQUIRED = 3


# Database


def _recreate_database(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@dataclass(frozen=True)
class Seeded:
    project_id: int
    sessions: list[tuple[int, str, str]]  # (user id, cookie token, CSRF token)


def seed(url: str, *, tasks: int, annotators: int) -> Seeded:
    """A project with `tasks` tasks of K samples each and `annotators` logged-in members."""
    from app import migrate
    from app.accounts import service as accounts
    from app.config import Settings
    from app.db import make_engine, utcnow
    from app.models import (
        PolicyVersion,
        ProjectMember,
        Prompt,
        RankingTask,
        Role,
        Sample,
        TaskSample,
        User,
    )
    from app.projects import service as projects

    migrate.upgrade("head", database_url=url)
    engine = make_engine(url)
    with Session(engine) as session:
        project = projects.create_project(
            session,
            name="bench",
            base_model="tiny",
            samples_per_prompt=K,
            annotations_per_task=REQUIRED,
        )
        version_id = session.scalars(
            select(PolicyVersion.id).where(PolicyVersion.project_id == project.id)
        ).one()
        now = utcnow()

        def insert_rows(model: Any, rows: list[dict[str, Any]]) -> list[int]:
            """One bulk INSERT of the project's rows (project_id and created_at added): the ids
            in the order of `rows`."""
            returning = insert(model).returning(model.id, sort_by_parameter_order=True)
            common = {"project_id": project.id, "created_at": now}
            return list(session.scalars(returning, [{**common, **row} for row in rows]).all())

        prompt_ids = insert_rows(
            Prompt,
            [
                {
                    "content_hash": f"{i:064x}",
                    "text": f"Bench prompt {i}: explain something in a few sentences.",
                }
                for i in range(tasks)
            ],
        )
        sample_ids = insert_rows(
            Sample,
            [
                {
                    "prompt_id": prompt_id,
                    "policy_version_id": version_id,
                    "ordinal": j,
                    "text": f"Answer {j} to prompt {prompt_id}. " * 20,
                }
                for prompt_id in prompt_ids
                for j in range(K)
            ],
        )
        task_ids = insert_rows(
            RankingTask,
            [
                {"prompt_id": prompt_id, "required_annotations": REQUIRED}
                for prompt_id in prompt_ids
            ],
        )
        session.execute(
            insert(TaskSample),
            [
                {"task_id": task_id, "sample_id": sample_ids[t * K + j], "position": j}
                for t, task_id in enumerate(task_ids)
                for j in range(K)
            ],
        )
        users = [
            User(username=f"bench{i}", role=Role.annotator, password_hash="!")
            for i in range(annotators)
        ]
        session.add_all(users)
        session.flush()
        session.add_all(ProjectMember(project_id=project.id, user_id=u.id) for u in users)
        settings = Settings(database_url=url)
        issued = [
            accounts.start_session(session, user=u, client_address="bench", settings=settings)
            for u in users
        ]
        session.commit()
        sessions = [
            (u.id, grant.token, grant.web_session.csrf_token)
            for u, grant in zip(users, issued, strict=True)
        ]
        project_id = project.id
    engine.dispose()
    return Seeded(project_id, sessions)


# Server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "RANKLOOP_DATABASE_URL": url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rankloop.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise TimeoutError("the server did not start")


# Load generator


class Connection:
    """One annotator's keep-alive HTTP/1.1 connection: a request is one write and one read."""

    def __init__(self, port: int, token: str, csrf: str, *, browser: bool) -> None:
        self.port = port
        self.csrf = csrf
        accept = "text/html" if browser else "application/json"
        htmx = "HX-Request: true\r\n" if browser else ""
        self.headers = (
            f"Host: 127.0.0.1:{port}\r\nCookie: rankloop_session={token}\r\n"
            f"X-CSRF-Token: {csrf}\r\nAccept: {accept}\r\n{htmx}"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, payload: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        content = f"Content-Type: {content_type}\r\n" if content_type else ""
        self.writer.write(
            f"POST {path} HTTP/1.1\r\n{self.headers}{content}"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""

    async def post_json(self, path: str, body: Any = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        status, data = await self.post(path, payload, "application/json" if body else "")
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Run:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "submit": []})
    accepted: set[tuple[int, int]] = field(default_factory=set)  # (task, user) of each ranking
    errors: list[str] = field(default_factory=list)
    empty: int = 0


async def _timed(run: Run, endpoint: str, request: Awaitable[T]) -> T:
    """Await a request, recording its latency under `endpoint`."""
    start = time.perf_counter()
    answer = await request
    run.latencies[endpoint].append(time.perf_counter() - start)
    return answer


def _random_groups(rng: random.Random, sample_ids: list[int]) -> list[list[int]]:
    """A random order with the odd tie, as an annotator's answer."""
    order = list(sample_ids)
    rng.shuffle(order)
    groups: list[list[int]] = []
    for sample_id in order:
        if groups and rng.random() < 0.1:
            groups[-1].append(sample_id)
        else:
            groups.append([sample_id])
    return groups


async def json_annotator(
    user_id: int, conn: Connection, run: Run, *, until: float, think: float, seed: int
) -> None:
    """next → (think) → submit → (think) → next …: two JSON requests per ranking."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.random() * think)  # spread the paced annotators out
    while time.perf_counter() < until:
        status, body = await _timed(run, "next", conn.post_json("/annotate/next"))
        if status != 200:
            run.errors.append(f"next {status}: {body}")
            return
        task = body["task"]
        if task is None:
            run.empty += 1
            await asyncio.sleep(max(think, 0.05))
            continue
        await asyncio.sleep(think)
        groups = _random_groups(rng, [s["id"] for s in task["samples"]])
        status, body = await _timed(
            run,
            "submit",
            conn.post_json(
                f"/annotate/tasks/{task['id']}/submit",
                {"groups": groups, "time_spent_ms": rng.randint(2000, 90000)},
            ),
        )
        if status == 200:
            run.accepted.add((task["id"], user_id))
        else:
            run.errors.append(f"submit {status}: {body}")
        await asyncio.sleep(think)


_TASK_ID = re.compile(rb'id="task-card" data-task-id="(\d+)"')
_SAMPLE_ID = re.compile(rb'data-sample-id="(\d+)"')


def _task_in(fragment: bytes) -> tuple[int, list[int]] | None:
    """(task id, sample ids) of the #task fragment the page would swap in; None when empty."""
    found = _TASK_ID.search(fragment)
    if found is None:
        return None
    return int(found.group(1)), [int(i) for i in _SAMPLE_ID.findall(fragment)]


async def browser_annotator(
    user_id: int, conn: Connection, run: Run, *, until: float, think: float, seed: int
) -> None:
    """What the ranking page does: next-task once, then each submit (the page's form) is
    answered by the next task's fragment. Next-task again only when the queue was empty."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.random() * think)
    task = None
    while time.perf_counter() < until:
        if task is None:
            status, fragment = await _timed(run, "next", conn.post("/annotate/next"))
            if status != 200:
                run.errors.append(f"next {status}: {fragment[:200]!r}")
                return
            task = _task_in(fragment)
            if task is None:
                run.empty += 1
                await asyncio.sleep(max(think, 0.05))
                continue
        await asyncio.sleep(think)
        task_id, sample_ids = task
        form = urlencode(
            {
                "csrf_token": conn.csrf,
                "groups": json.dumps(_random_groups(rng, sample_ids)),
                "flags": "[]",
                "time_spent_ms": rng.randint(2000, 90000),
            }
        ).encode()
        status, fragment = await _timed(
            run,
            "submit",
            conn.post(
                f"/annotate/tasks/{task_id}/submit", form, "application/x-www-form-urlencoded"
            ),
        )
        if status == 200 and f"Saved task {task_id}.".encode() in fragment:
            run.accepted.add((task_id, user_id))
            task = _task_in(fragment)
            if task is None:
                run.empty += 1
        else:
            run.errors.append(f"submit {status}: {fragment[:200]!r}")
            task = None


async def drive(
    port: int,
    sessions: list[tuple[int, str, str]],
    *,
    seconds: float,
    think: float,
    browser: bool,
) -> tuple[Run, float]:
    run = Run()
    conns = [Connection(port, token, csrf, browser=browser) for _, token, csrf in sessions]
    annotator = browser_annotator if browser else json_annotator
    start = time.perf_counter()
    await asyncio.gather(
        *(
            annotator(uid, conn, run, until=start + seconds, think=think, seed=i)
            for i, ((uid, _, _), conn) in enumerate(zip(sessions, conns, strict=True))
        )
    )
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return run, elapsed


# Checks and report


def check(url: str, accepted: set[tuple[int, int]]) -> dict[str, int]:
    """Counts that must all be zero: over-assigned tasks, double rankings, lost or extra ones."""
    from app.db import make_engine, utcnow
    from app.models import Assignment, AssignmentState, Comparison, Ranking, RankingTask

    engine = make_engine(url)
    now = utcnow()
    with Session(engine) as session:
        per_task = dict(
            session.execute(select(Ranking.task_id, func.count()).group_by(Ranking.task_id)).all()
        )
        live = dict(
            session.execute(
                select(Assignment.task_id, func.count())
                .where(Assignment.state == AssignmentState.leased, Assignment.expires_at > now)
                .group_by(Assignment.task_id)
            ).all()
        )
        tasks = session.execute(
            select(RankingTask.id, RankingTask.annotations_done, RankingTask.required_annotations)
        )
        over = miscounted = 0
        for task_id, done, required in tasks:
            over += per_task.get(task_id, 0) + live.get(task_id, 0) > required
            miscounted += per_task.get(task_id, 0) != done
        stored = {
            ranking_id: (task_id, user_id)
            for ranking_id, task_id, user_id in session.execute(
                select(Ranking.id, Ranking.task_id, Ranking.user_id)
            )
        }
        pairs = dict(
            session.execute(
                select(Comparison.ranking_id, func.count()).group_by(Comparison.ranking_id)
            ).all()
        )
        distinct = session.scalar(
            select(func.count()).select_from(
                select(Ranking.task_id, Ranking.user_id).distinct().subquery()
            )
        )
    engine.dispose()
    return {
        "tasks over-assigned (rankings + live leases > required)": over,
        "tasks whose annotations_done != rankings": miscounted,
        "annotator ranked a task twice": len(stored) - int(distinct or 0),
        "accepted rankings missing": len(accepted - set(stored.values())),
        "stored rankings never accepted": len(set(stored.values()) - accepted),
        "rankings without 36 pairs": sum(pairs.get(r, 0) != K * (K - 1) // 2 for r in stored),
    }


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes (Linux /proc); processes gone meanwhile count 0."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _server_pids(server: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [server.pid, *(int(p) for p in children.read_text().split())]


def _postgres_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def cpu_snapshot(server: subprocess.Popen[bytes]) -> tuple[float, dict[int, float]]:
    """Server CPU and each PostgreSQL process's CPU, for CPU time per ranking: on a shared
    machine the figure that depends least on what else runs."""
    return _cpu_seconds(_server_pids(server)), {p: _cpu_seconds([p]) for p in _postgres_pids()}


def cpu_per_ranking(
    before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]], rankings: int
) -> str:
    server = after[0] - before[0]
    database = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    per = 1000 / max(rankings, 1)
    return f"CPU per ranking: server {server * per:.1f} ms, PostgreSQL {database * per:.1f} ms"


def uptime() -> str:
    """The load averages: on a shared machine, what the figures were measured under."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(title: str, run: Run, elapsed: float, *, browser: bool) -> None:
    table = Table(title=title)
    labels = {"next": "next task", "submit": "submit + next task" if browser else "submit"}
    for column in ("endpoint", "requests", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for name, values in run.latencies.items():
        table.add_row(
            labels[name],
            str(len(values)),
            f"{_ms(values, 0.5):.1f}",
            f"{_ms(values, 0.99):.1f}",
            f"{_ms(values, 1.0):.1f}",
        )
    console.print(table)
    console.print(
        f"{len(run.accepted)} rankings in {elapsed:.1f} s = "
        f"[bold]{len(run.accepted) / elapsed:.0f} rankings/s[/bold]; "
        f"{run.empty} empty next-task answers; {len(run.errors)} errors"
    )
    for error in run.errors[:5]:
        console.print(f"  [red]{error}[/red]")


@app.command()
def main(
    admin_url: str = typer.Option(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL of a database to connect to while creating the bench database.",
    ),
    database: str = typer.Option("rankloop_bench_annotate", help="Bench database (recreated)."),
    workers: int = typer.Option(2, help="`rankloop serve --workers`."),
    annotators: int = typer.Option(100, help="Paced annotators in run (a)."),
    think: float = typer.Option(1.0, help="Seconds each paced annotator waits between requests."),
    paced_seconds: float = typer.Option(30.0, help="Length of run (a)."),
    concurrency: int = typer.Option(32, help="Annotators with no waiting in run (b)."),
    capacity_seconds: float = typer.Option(20.0, help="Length of run (b)."),
    tasks: int = typer.Option(4000, help="Tasks seeded (each takes 3 rankings)."),
    client: str = typer.Option(
        "browser", help="browser: the ranking page's requests; json: next + submit as JSON."
    ),
) -> None:
    """Seed, start the server, run (a) paced and (b) capacity, check the database."""
    if client not in ("browser", "json"):
        raise typer.BadParameter("--client is browser or json")
    browser = client == "browser"
    url = _recreate_database(admin_url, database)
    console.print(f"Load averages at the start: {uptime()}")
    console.print(f"Seeding {tasks} tasks (K={K}, {REQUIRED} annotations each) …")
    seeded = seed(url, tasks=tasks, annotators=max(annotators, concurrency))
    log = Path(tempfile.mkdtemp(prefix="rankloop-bench-")) / "server.log"
    server, port = start_server(url, workers, log)
    console.print(f"rankloop serve --workers {workers} on port {port} (log {log})")
    try:
        asyncio.run(_warm_up(port, seeded.sessions[0]))
        run_a, elapsed_a = asyncio.run(
            drive(
                port,
                seeded.sessions[:annotators],
                seconds=paced_seconds,
                think=think,
                browser=browser,
            )
        )
        report(
            f"(a) {client} client: {annotators} annotators, {think:g} s between requests",
            run_a,
            elapsed_a,
            browser=browser,
        )
        before = cpu_snapshot(server)
        run_b, elapsed_b = asyncio.run(
            drive(
                port,
                seeded.sessions[:concurrency],
                seconds=capacity_seconds,
                think=0.0,
                browser=browser,
            )
        )
        after = cpu_snapshot(server)
        report(
            f"(b) {client} client, capacity: {concurrency} annotators, no waiting",
            run_b,
            elapsed_b,
            browser=browser,
        )
        console.print(f"{cpu_per_ranking(before, after, len(run_b.accepted))}; load {uptime()}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    accepted = run_a.accepted | run_b.accepted
    problems = check(url, accepted)
    table = Table(title="Afterwards (all must be 0)")
    table.add_column("check")
    table.add_column("count", justify="right")
    for name, count in problems.items():
        table.add_row(name, f"[{'green' if count == 0 else 'red'}]{count}[/]")
    console.print(table)
    p99 = max(_ms(run_a.latencies["next"], 0.99), _ms(run_a.latencies["submit"], 0.99))
    rate = len(run_b.accepted) / elapsed_b
    console.print(
        f"Goals: (a) p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'} ({p99:.1f} ms); "
        f"(b) >= 150 rankings/s: {'met' if rate >= 150 else 'NOT met'} ({rate:.0f}/s)"
    )
    if any(problems.values()) or run_a.errors or run_b.errors:
        raise typer.Exit(code=1)


async def _warm_up(port: int, session: tuple[int, str, str]) -> None:
    """One round trip per worker process so imports and pools are not timed."""
    conn = Connection(port, session[1], session[2], browser=False)
    for _ in range(4):
        await conn.post_json("/annotate/next")
    conn.close()


if __name__ == "__main__":
    app()
