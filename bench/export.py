"""Export throughput and server memory: stream 1,000,000 pairs from PostgreSQL over HTTP.

Seeds a fresh PostgreSQL database in SQL (K=4 rankings: 6 pairs each, ~100-character
samples), starts `rankloop serve` on it, downloads /api/v1/projects/{id}/pairs.jsonl with a
token, and prints pairs per second and the server's resident memory, sampled every 20 ms
while it streams. A smaller export (a `since` filter keeping about a tenth) runs first, so
the two peaks show whether memory grows with the export (it should not).

    .venv/bin/python -m bench.export                    # 1,000,000 pairs (~20 s to seed)
    .venv/bin/python -m bench.export --pairs 200000 --gzip
    RANKLOOP_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (default)
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

ADMIN_URL = os.environ.get(
    "RANKLOOP_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
K = 4
PAIRS_PER_RANKING = K * (K - 1) // 2
ANNOTATORS = 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux /proc), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def create_database(name: str) -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str, pairs: int) -> tuple[int, str]:
    """(project id, token): users and project through the services, bulk rows in SQL."""
    from app import migrate
    from app.db import make_engine
    from app.models import Role
    from app.tokens import service as tokens
    from tests.factories import make_project, make_user

    migrate.upgrade("head", database_url=url)
    engine = make_engine(url)
    with Session(engine) as session:
        admin = make_user(session, role=Role.admin, username="bench-admin")
        users = [make_user(session, username=f"annotator{i}").id for i in range(ANNOTATORS)]
        project = make_project(session, name="bench", samples_per_prompt=K)
        token = tokens.create_token(
            session, name="bench", scopes=["read"], created_by_id=admin.id
        ).secret
        session.commit()
        project_id = project.id
    rankings = -(-pairs // PAIRS_PER_RANKING)
    params = {"p": project_id, "n": rankings, "t0": T0, "u0": min(users)}
    steps = [
        # prompts: one per ranking task
        """INSERT INTO prompts (project_id, content_hash, text, source, active, created_at)
           SELECT :p, md5('bench' || g), 'Prompt ' || g || ': write a short poem about the sea.',
                  'plain', true, :t0
           FROM generate_series(1, :n) g""",
        # K samples per prompt from the base version
        """INSERT INTO samples (project_id, prompt_id, policy_version_id, ordinal, text,
                               generation_params, finished, is_empty, is_duplicate, created_at)
           SELECT :p, pr.id, pv.id, k,
                  'Sample ' || k || ' of prompt ' || pr.id || ': ' || repeat('waves roll ', 8),
                  '{}'::jsonb, true, false, false, :t0
           FROM prompts pr CROSS JOIN generate_series(0, 3) k
           JOIN policy_versions pv ON pv.project_id = :p AND pv.number = 1
           WHERE pr.project_id = :p""",
        """INSERT INTO ranking_tasks (project_id, prompt_id, required_annotations,
                                     annotations_done, status, created_at, completed_at)
           SELECT :p, id, 1, 1, 'complete', :t0, :t0 FROM prompts WHERE project_id = :p""",
        """INSERT INTO task_samples (task_id, sample_id, position)
           SELECT t.id, s.id, s.ordinal FROM ranking_tasks t
           JOIN samples s ON s.prompt_id = t.prompt_id WHERE t.project_id = :p""",
        # one ranking per task, best first = ordinal order; a second apart each
        """INSERT INTO rankings (project_id, task_id, user_id, groups, display_order,
                                none_usable, created_at)
           SELECT :p, t.id, :u0 + (t.id % 20),
                  jsonb_agg(jsonb_build_array(s.id) ORDER BY s.ordinal),
                  jsonb_agg(s.id ORDER BY s.ordinal), false,
                  :t0 + make_interval(secs => t.id)
           FROM ranking_tasks t JOIN samples s ON s.prompt_id = t.prompt_id
           WHERE t.project_id = :p GROUP BY t.id""",
        """INSERT INTO comparisons (project_id, ranking_id, task_id, prompt_id, user_id,
                                   winner_id, loser_id, winner_version_id, loser_version_id,
                                   tie, created_at)
           SELECT :p, r.id, t.id, t.prompt_id, r.user_id, a.id, b.id,
                  a.policy_version_id, b.policy_version_id, false, r.created_at
           FROM rankings r JOIN ranking_tasks t ON t.id = r.task_id
           JOIN samples a ON a.prompt_id = t.prompt_id
           JOIN samples b ON b.prompt_id = t.prompt_id AND a.ordinal < b.ordinal
           WHERE r.project_id = :p""",
    ]
    with engine.begin() as conn:
        # The rows are consistent by construction: skip the foreign-key triggers (nine per
        # pair, queued until commit). Needs a superuser, as the default admin URL is.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
        for step in steps:
            tic = time.perf_counter()
            conn.execute(text(step), params)
            if "INTO " in step:
                # Fresh statistics, or the next step's joins plan for empty tables (nested
                # loops: seeding time then grows with the square of the size).
                table = step.split("INTO ")[1].split()[0]
                conn.execute(text(f"ANALYZE {table}"))
                print(f"  {table}: {time.perf_counter() - tic:.1f} s", flush=True)
    engine.dispose()
    return project_id, token


def start_server(url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RANKLOOP_DATABASE_URL": url, "RANKLOOP_DATA_DIR": str(data_dir)}
    env["RANKLOOP_API_RATE_LIMIT_PER_MINUTE"] = "100000"
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rankloop.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def download(
    base: str, project: int, token: str, pid: int, *, gzip: bool, since: datetime | None
) -> dict[str, float]:
    """Stream one export; returns lines, seconds and the server's RSS (KiB) over the run."""
    samples: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            samples.append(rss_kib(pid))
            time.sleep(0.02)

    params = {"since": since.isoformat()} if since else {}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept-Encoding": "gzip" if gzip else "identity",
    }
    before = rss_kib(pid)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = size = 0
    start = time.perf_counter()
    with httpx.stream(
        "GET",
        f"{base}/api/v1/projects/{project}/pairs.jsonl",
        params=params,
        headers=headers,
        timeout=600,
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():  # decoded when gzipped
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    return {
        "lines": lines,
        "mib": size / 2**20,
        "seconds": seconds,
        "rss_before": before,
        "rss_peak": max(samples + [before]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--gzip", action="store_true", help="Accept-Encoding: gzip")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    import tempfile

    name = f"rankloop_bench_export_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    data_dir = Path(tempfile.mkdtemp(prefix="rankloop-bench-"))
    server = None
    try:
        tic = time.perf_counter()
        project, token = seed(url, args.pairs)
        print(
            f"seeded {args.pairs:,} pairs in {time.perf_counter() - tic:.0f} s ({name})", flush=True
        )
        server = start_server(url, args.port, data_dir)
        base = f"http://127.0.0.1:{args.port}"
        rankings = -(-args.pairs // PAIRS_PER_RANKING)
        tenth = T0 + timedelta(seconds=rankings - rankings // 10)
        print("export           pairs    seconds  pairs/s   MiB/s  server RSS MiB (before → peak)")
        for label, since in (("~10% (since)", tenth), ("all", None)):
            r = download(base, project, token, server.pid, gzip=args.gzip, since=since)
            print(
                f"{label:13s} {int(r['lines']):>9,} {r['seconds']:9.2f} "
                f"{r['lines'] / r['seconds']:8,.0f} {r['mib'] / r['seconds']:7.1f}  "
                f"{r['rss_before'] / 1024:7.1f} → {r['rss_peak'] / 1024:.1f}"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep:
            drop_database(name)


if __name__ == "__main__":
    main()
