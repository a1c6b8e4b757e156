"""The judging job (worker/jobs/judging.py) on a committed database: a simulated judge and an
OpenAI-compatible endpoint served on loopback by a scripted ranker. Rankings land marked as AI
and never take a human slot; malformed answers are retried then skipped with the reason;
429s are retried; an endpoint that stays down ends the run and leaves the task; the key never
reaches the database or the log."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, Text, select

from app.db import Base, session_scope
from app.judges import service as judges
from app.models import Comparison, Judge, JudgeTaskLog, Ranking, RankingTask
from tests.conftest import FreshDatabase
from tests.factories import make_judge, make_project, make_task
from worker.jobs.judging import UNAVAILABLE_RUNS, run_judge

pytestmark = pytest.mark.usefixtures("app_database")

KEY_ENV = "RANKLOOP_TEST_JUDGE_KEY"


def project_with_tasks(tasks: int, k: int = 4) -> tuple[int, list[int]]:
    """A committed project with `tasks` open tasks of k samples of different lengths."""
    with session_scope() as session:
        project = make_project(session, samples_per_prompt=k)
        ids = [
            make_task(
                session, project, texts=[" ".join(["word"] * (5 + 7 * i + t)) for i in range(k)]
            ).id
            for t in range(tasks)
        ]
        return project.id, ids


def add_judge(project_id: int, **fields: Any) -> int:
    """A committed judge (tests.factories.make_judge: simulated, preferring length 30)."""
    with session_scope() as session:
        return make_judge(session, project_id, **fields).id


def judge_row(judge_id: int) -> Judge:
    with session_scope(readonly=True) as session:
        row = session.get(Judge, judge_id)
        assert row is not None
        session.expunge(row)
        return row


def logs(judge_id: int, outcome: str) -> list[JudgeTaskLog]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(
            select(JudgeTaskLog).where(
                JudgeTaskLog.judge_id == judge_id, JudgeTaskLog.outcome == outcome
            )
        ).all()
        session.expunge_all()
        return list(rows)


def rankings(task_ids: list[int]) -> list[Ranking]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(Ranking).where(Ranking.task_id.in_(task_ids))).all()
        session.expunge_all()
        return list(rows)


# ---------------------------------------------------------------------------------------------
# A simulated judge


def test_a_simulated_judge_ranks_every_task_as_ai_without_taking_a_human_slot() -> None:
    project_id, task_ids = project_with_tasks(3)
    judge_id = add_judge(project_id)

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped, report.stopped) == (3, 0, "no task")
    judge = judge_row(judge_id)
    found = rankings(task_ids)
    assert sorted(r.task_id for r in found) == sorted(task_ids)
    for ranking in found:
        assert (ranking.source, ranking.judge_id, ranking.user_id) == (
            "ai",
            judge_id,
            judge.user_id,
        )
        assert ranking.judge_prompt_version == judge.prompt_version
    with session_scope(readonly=True) as session:
        sources = set(
            session.scalars(select(Comparison.source).where(Comparison.task_id.in_(task_ids)))
        )
        done = set(
            session.scalars(
                select(RankingTask.annotations_done).where(RankingTask.id.in_(task_ids))
            )
        )
    assert sources == {"ai"}
    assert done == {0}  # every task still waits for its people
    assert len(logs(judge_id, "ranked")) == 3
    assert run_judge(judge_id).ranked == 0  # nothing left for it: a second run is a no-op


def test_the_judge_ranks_by_its_preference() -> None:
    """Agreement 1.0 with length:30 (longer is better below 30 words): longest first."""
    project_id, task_ids = project_with_tasks(1)
    judge_id = add_judge(project_id)

    run_judge(judge_id)

    (ranking,) = rankings(task_ids)
    with session_scope(readonly=True) as session:
        from app.models import Sample

        lengths = {
            s.id: len(s.text.split())
            for s in session.scalars(
                select(Sample).where(Sample.id.in_([i for g in ranking.groups for i in g]))
            )
        }
    ordered = [lengths[group[0]] for group in ranking.groups]
    assert ordered == sorted(ordered, reverse=True)


def test_concurrent_threads_share_max_tasks_and_never_rank_a_task_twice() -> None:
    project_id, task_ids = project_with_tasks(5)
    judge_id = add_judge(project_id, concurrency=3)

    first = run_judge(judge_id, max_tasks=4)
    second = run_judge(judge_id)

    assert (first.ranked, first.stopped) == (4, "max tasks")
    assert second.ranked == 1
    assert sorted(r.task_id for r in rankings(task_ids)) == sorted(task_ids)


def test_position_checks_judge_the_reversed_order_and_log_the_flips() -> None:
    project_id, _ = project_with_tasks(2)
    judge_id = add_judge(project_id, position_check_share=1.0)

    report = run_judge(judge_id)

    assert report.position_checks == 2
    checks = logs(judge_id, "position_check")
    assert len(checks) == 2
    # the simulated judge answers the same whatever the order: nothing flips
    assert {(c.flipped_pairs, c.total_pairs) for c in checks} == {(0, 6)}


def test_a_missing_key_variable_pauses_the_judge_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    project_id, task_ids = project_with_tasks(1)
    judge_id = add_judge(project_id, api_key_env=KEY_ENV)

    report = run_judge(judge_id)

    assert (report.ranked, report.stopped) == (0, "paused")
    judge = judge_row(judge_id)
    assert judge.state == "paused"
    assert judge.paused_reason == (
        f"environment variable {KEY_ENV} is not set on the judging worker"
    )
    assert rankings(task_ids) == []


def test_a_paused_judge_does_not_run() -> None:
    project_id, task_ids = project_with_tasks(1)
    judge_id = add_judge(project_id)
    with session_scope() as session:
        judges.pause_judge(session, judge_id=judge_id, reason="by hand")

    report = run_judge(judge_id)

    assert (report.ranked, report.stopped, report.reason) == (0, "paused", "by hand")
    assert rankings(task_ids) == []


# ---------------------------------------------------------------------------------------------
# An OpenAI-compatible endpoint on loopback


@dataclass
class Script:
    """What the endpoint answers, in order; then `then` for ever. An answer is (status, text):
    status 200 replies with `text` as the assistant's message ('RANK' ranks the labels in the
    order shown), others reply with that status and no body."""

    answers: list[tuple[int, str]] = field(default_factory=list)
    then: tuple[int, str] = (200, "RANK")
    seen_keys: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, str]:
        with self.lock:
            self.requests += 1
            return self.answers.pop(0) if self.answers else self.then


def _ranked_in_order(prompt: str) -> str:
    labels = sorted({int(n) for n in re.findall(r"^\[(\d+)\]$", prompt, re.MULTILINE)})
    return "The first is best.\nRANKING: " + " > ".join(map(str, labels))


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.seen_keys.append(self.headers.get("Authorization", ""))
            status, text = script.next()
            if status != 200:
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            if text == "RANK":
                text = _ranked_in_order(body["messages"][0]["content"])
            reply = {"choices": [{"message": {"role": "assistant", "content": text}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()


def add_endpoint_judge(project_id: int, url: str, **fields: Any) -> int:
    return add_judge(
        project_id,
        backend="openai",
        model="scripted-ranker",
        base_url=url,
        options={"backoff_s": 0.01, "max_wait_s": 0.05},
        max_attempts=3,
        timeout_s=5.0,
        **fields,
    )


def test_an_endpoint_judge_retries_malformed_answers_then_skips_with_the_reason(
    endpoint: tuple[str, Script],
) -> None:
    url, script = endpoint
    project_id, task_ids = project_with_tasks(2)
    judge_id = add_endpoint_judge(project_id, url)
    # first task: one unreadable answer, then a good one; second: never readable
    script.answers = [(200, "I like them all."), (200, "RANK")] + [(200, "No idea.")] * 3

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped) == (1, 1)
    assert script.requests == 5
    (ranked,) = logs(judge_id, "ranked")
    assert ranked.attempts == 2
    (skipped,) = logs(judge_id, "skipped")
    assert skipped.attempts == 3
    assert skipped.reason is not None
    assert "RANKING" in skipped.reason
    assert "3 attempts" in skipped.reason
    assert {r.task_id for r in rankings(task_ids)} == {ranked.task_id}
    assert run_judge(judge_id).ranked == 0  # the skipped task is not leased again


def test_an_endpoint_judge_retries_a_429_and_ranks(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    project_id, task_ids = project_with_tasks(1)
    judge_id = add_endpoint_judge(project_id, url)
    script.answers = [(429, ""), (503, "")]

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped, script.requests) == (1, 0, 3)
    assert len(rankings(task_ids)) == 1


def test_an_endpoint_that_stays_down_ends_the_run_and_leaves_the_task(
    endpoint: tuple[str, Script],
) -> None:
    url, script = endpoint
    project_id, task_ids = project_with_tasks(2)
    judge_id = add_endpoint_judge(project_id, url)
    script.then = (503, "")

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped, report.stopped) == (0, 0, "unavailable")
    assert report.retry_in is not None
    assert report.reason is not None
    assert "503" in report.reason
    assert script.requests == 3  # one task's attempts; the run stopped there
    assert judge_row(judge_id).state == "active"
    assert logs(judge_id, "skipped") == []

    last = run_judge(judge_id, unavailable_runs=UNAVAILABLE_RUNS - 1)

    assert (last.stopped, last.retry_in) == ("paused", None)
    judge = judge_row(judge_id)
    assert judge.state == "paused"
    assert judge.paused_reason is not None
    assert "503" in judge.paused_reason
    assert rankings(task_ids) == []


def _text_in_database(db: FreshDatabase) -> str:
    """Every text column of every table, as one string."""
    chunks: list[str] = []
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            columns = [
                c
                for c in table.columns
                if isinstance(c.type, (String, Text)) or "JSON" in str(c.type)
            ]
            if not columns:
                continue
            for row in session.execute(select(*columns)):
                chunks.extend(str(value) for value in row if value is not None)
    return "\n".join(chunks)


def test_the_key_reaches_the_endpoint_but_never_the_database_or_the_log(
    app_database: FreshDatabase,
    endpoint: tuple[str, Script],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, script = endpoint
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv(KEY_ENV, key)
    project_id, _ = project_with_tasks(2)
    judge_id = add_endpoint_judge(project_id, url, api_key_env=KEY_ENV)
    # a malformed answer, a retried 429 and a skip: every path that logs or stores a reason
    script.answers = [(429, ""), (200, "RANK")] + [(200, "no ranking here")] * 3
    caplog.set_level(logging.DEBUG)

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped) == (1, 1)
    assert set(script.seen_keys) == {f"Bearer {key}"}
    assert key not in caplog.text
    assert key not in _text_in_database(app_database)
    if app_database.url.startswith("sqlite"):
        path = app_database.url.split("///", 1)[1]
        assert key.encode() not in open(path, "rb").read()
    pages = _admin_pages(project_id)
    assert KEY_ENV in pages[0]  # the page names the variable…
    assert all(key not in page for page in pages)  # …and never shows its value


def _admin_pages(project_id: int) -> list[str]:
    """The judges page and its progress fragment, as an admin sees them."""
    from fastapi.testclient import TestClient

    from app.models import Role
    from rankloop.web import create_app
    from tests.factories import make_user
    from tests.helpers import login

    username = f"admin-{secrets.token_hex(4)}"
    with session_scope() as session:
        make_user(session, username=username, role=Role.admin)
    with TestClient(create_app(), base_url="http://testserver") as client:
        login(client, username)
        pages = [
            client.get(f"/admin/projects/{project_id}/judges"),
            client.get(f"/admin/projects/{project_id}/judges/progress"),
        ]
    assert [p.status_code for p in pages] == [200, 200]
    return [p.text for p in pages]


def test_a_local_judge_on_the_tiny_model_ranks_by_log_probabilities(tiny_model_path: Path) -> None:
    project_id, task_ids = project_with_tasks(2)
    judge_id = add_judge(
        project_id, backend="hf", model=str(tiny_model_path), method="logprob", options={}
    )

    report = run_judge(judge_id)

    assert (report.ranked, report.skipped) == (2, 0)
    found = rankings(task_ids)
    assert {r.source for r in found} == {"ai"}
    assert all(sum(len(group) for group in r.groups) == 4 for r in found)  # every sample placed


def test_a_run_for_a_deleted_judge_does_nothing() -> None:
    assert run_judge(987654).stopped == "gone"


def test_a_verdict_for_a_task_another_worker_ranked_meanwhile_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The judge's lease ran out while it judged and another of its workers ranked the task
    first: that ranking stands, the run goes on, nothing is stored twice."""
    import worker.jobs.judging as job

    project_id, task_ids = project_with_tasks(2)
    judge_id = add_judge(project_id)
    real_make_judge = job.make_judge
    raced: list[int] = []

    class RacedJudge:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def judge(self, item: Any) -> Any:
            verdict = self.inner.judge(item)
            if not raced:  # the other worker records this very task first
                with session_scope() as session:
                    task_id = session.scalar(
                        select(RankingTask.id)
                        .join(Ranking, Ranking.task_id == RankingTask.id, isouter=True)
                        .where(RankingTask.id.in_(task_ids), Ranking.id.is_(None))
                        .order_by(RankingTask.id)
                    )
                    assert task_id is not None
                    sample_ids = [i for group in verdict.groups for i in group]
                    if set(sample_ids) != {s for s, _ in item.samples}:
                        return verdict
                    judges.record_judgement(
                        session,
                        judge_id=judge_id,
                        task_id=task_id,
                        groups=verdict.groups,
                        harmful={},
                        elapsed_ms=1,
                        attempts=1,
                    )
                    raced.append(task_id)
            return verdict

    monkeypatch.setattr(job, "make_judge", lambda spec: RacedJudge(real_make_judge(spec)))

    report = run_judge(judge_id)

    assert raced  # the race happened
    assert report.ranked == 1  # the dropped verdict is not counted
    found = rankings(task_ids)
    assert sorted(r.task_id for r in found) == sorted(task_ids)  # each task ranked once
