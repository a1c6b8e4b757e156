"""50 annotators pulling and submitting in parallel against a live server until the queue is
empty; afterwards nothing is over-assigned, duplicated or lost.

Written for PostgreSQL (row locks, SKIP LOCKED); it runs on SQLite too, where writers are
serialised by BEGIN IMMEDIATE.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import comb
from typing import Any

import httpx
import pytest
from sqlalchemy import case, func, select

from app.accounts import service as accounts
from app.config import get_settings
from app.models import Assignment, AssignmentState, Comparison, Ranking, RankingTask, TaskStatus
from tests.annotation.conftest import make_member
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_task

ANNOTATORS = 50
TASKS = 60
K = 9
REQUIRED = 3


@dataclass
class Accepted:
    user_id: int
    task_id: int
    ranking_id: int
    groups: list[list[int]]
    none_usable: bool


@dataclass
class Tally:
    """What the clients saw, shared by the threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[Accepted] = field(default_factory=list)
    holding: int = 0
    skips: int = 0
    rejected_resubmits: int = 0
    slowest: tuple[float, str] = (0.0, "")

    def timed(self, what: str, call: Any) -> httpx.Response:
        start = time.perf_counter()
        response = call()
        elapsed = time.perf_counter() - start
        with self.lock:
            self.slowest = max(self.slowest, (elapsed, what))
        return response


@pytest.fixture(scope="module")
def clients(fresh_database: FreshDatabase, live_server: LiveServer) -> Iterator[list[Any]]:
    """A project with TASKS tasks of K samples, ANNOTATORS members with live sessions."""
    with fresh_database.session() as session:
        project = make_project(session, samples_per_prompt=K, annotations_per_task=REQUIRED)
        for _ in range(TASKS):
            make_task(session, project)
        members = [make_member(session, project) for _ in range(ANNOTATORS)]
        issued = [
            accounts.start_session(session, user=u, client_address="test", settings=get_settings())
            for u in members
        ]
        session.commit()
        out = []
        for user, grant in zip(members, issued, strict=True):
            http = httpx.Client(
                base_url=live_server.url,
                cookies={"rankloop_session": grant.token},
                headers={
                    "X-CSRF-Token": grant.web_session.csrf_token,
                    "Accept": "application/json",
                },
                timeout=60,
            )
            out.append((user.id, http))
    yield out
    for _, http in out:
        http.close()


def random_groups(rng: random.Random, sample_ids: list[int]) -> list[list[int]]:
    order = sample_ids[:]
    rng.shuffle(order)
    groups: list[list[int]] = []
    for sample_id in order:
        if groups and rng.random() < 0.2:
            groups[-1].append(sample_id)  # a tie with the one above
        else:
            groups.append([sample_id])
    return groups


def work(user_id: int, http: httpx.Client, tally: Tally, seed: int, sweep: bool = False) -> None:
    """Pull, then submit (or now and then skip, answer "none usable", double-click, resubmit)
    until no task is left for this annotator and nobody holds a lease that could free one."""
    rng = random.Random(seed)
    while True:
        if rng.random() < 0.05:  # a double click: both requests get the same task
            with ThreadPoolExecutor(2) as pool:
                twins = list(pool.map(lambda _: http.post("/annotate/next"), range(2)))
            tasks = [t.json()["task"] for t in twins]
            assert (tasks[0] or {}).get("id") == (tasks[1] or {}).get("id")
            task = tasks[0]
        else:
            response = tally.timed("next", lambda: http.post("/annotate/next"))
            assert response.status_code == 200, response.text
            task = response.json()["task"]
        if task is not None:
            with tally.lock:
                tally.holding += 1
            try:
                act(user_id, http, tally, rng, task)
            finally:
                with tally.lock:
                    tally.holding -= 1
            continue
        with tally.lock:
            idle = tally.holding == 0
        if idle or sweep:
            return
        time.sleep(0.02)


def act(user_id: int, http: httpx.Client, tally: Tally, rng: random.Random, task: Any) -> None:
    path = f"/annotate/tasks/{task['id']}"
    roll = rng.random()
    if roll < 0.08:
        response = tally.timed("skip", lambda: http.post(path + "/skip"))
        assert response.status_code == 200, response.text
        with tally.lock:
            tally.skips += 1
        return
    none_usable = roll < 0.13
    body: dict[str, Any] = (
        {"none_usable": True, "none_usable_reason": "all unusable"}
        if none_usable
        else {"groups": random_groups(rng, [s["id"] for s in task["samples"]])}
    )
    body["time_spent_ms"] = rng.randint(1000, 60000)
    response = tally.timed("submit", lambda: http.post(path + "/submit", json=body))
    assert response.status_code == 200, response.text
    with tally.lock:
        tally.accepted.append(
            Accepted(
                user_id,
                task["id"],
                response.json()["ranking_id"],
                body.get("groups", []),
                none_usable,
            )
        )
    if rng.random() < 0.05:
        again = http.post(path + "/submit", json=body)
        assert again.status_code == 409, again.text
        with tally.lock:
            tally.rejected_resubmits += 1


@pytest.fixture(scope="module")
def tally(clients: list[Any]) -> Tally:
    tally = Tally()
    start = time.perf_counter()
    with ThreadPoolExecutor(ANNOTATORS) as pool:
        futures = [
            pool.submit(work, user_id, http, tally, seed)
            for seed, (user_id, http) in enumerate(clients)
        ]
        for future in futures:
            future.result()
    elapsed = time.perf_counter() - start
    concurrent = len(tally.accepted)
    # A skip after an annotator stopped may free a slot: the others sweep it up in turn.
    for seed, (user_id, http) in enumerate(clients):
        work(user_id, http, tally, 1000 + seed, sweep=True)
    print(
        f"\n{concurrent} rankings by {ANNOTATORS} annotators in {elapsed:.2f} s "
        f"({concurrent / elapsed:.0f}/s); {len(tally.accepted) - concurrent} in the sweep; "
        f"{tally.skips} skips, {tally.rejected_resubmits} resubmissions rejected; slowest "
        f"request {tally.slowest[0] * 1000:.0f} ms ({tally.slowest[1]})"
    )
    return tally


def test_the_queue_ends_empty_for_every_annotator(clients: list[Any], tally: Tally) -> None:
    for _, http in clients:
        assert http.post("/annotate/next").json()["task"] is None


def test_every_task_is_complete_with_exactly_the_required_rankings(
    fresh_database: FreshDatabase, tally: Tally
) -> None:
    with fresh_database.session() as session:
        per_task = Counter(
            dict(
                session.execute(
                    select(Ranking.task_id, func.count()).group_by(Ranking.task_id)
                ).all()
            )
        )
        tasks = session.scalars(select(RankingTask)).all()
    assert len(tasks) == TASKS
    for task in tasks:
        assert per_task[task.id] == task.annotations_done == REQUIRED
        assert task.status == TaskStatus.complete


def test_no_annotator_ranked_a_task_twice(fresh_database: FreshDatabase, tally: Tally) -> None:
    with fresh_database.session() as session:
        pairs = session.execute(select(Ranking.task_id, Ranking.user_id)).all()
    assert len(pairs) == len(set(pairs))
    assert len({(a.task_id, a.user_id) for a in tally.accepted}) == len(tally.accepted)


def test_every_accepted_submission_is_stored_and_nothing_else(
    fresh_database: FreshDatabase, tally: Tally
) -> None:
    with fresh_database.session() as session:
        stored = {
            r.id: (r.user_id, r.task_id, r.groups, r.none_usable)
            for r in session.scalars(select(Ranking))
        }
    assert stored == {
        a.ranking_id: (a.user_id, a.task_id, a.groups, a.none_usable) for a in tally.accepted
    }


def test_the_pairs_add_up(fresh_database: FreshDatabase, tally: Tally) -> None:
    with fresh_database.session() as session:
        rows = session.execute(
            select(
                Comparison.ranking_id, func.count(), func.sum(case((Comparison.tie, 1), else_=0))
            ).group_by(Comparison.ranking_id)
        )
        per_ranking = {ranking_id: (n, int(ties)) for ranking_id, n, ties in rows}
    for a in tally.accepted:
        if a.none_usable:
            assert a.ranking_id not in per_ranking
        else:
            ties = sum(comb(len(g), 2) for g in a.groups)
            assert per_ranking[a.ranking_id] == (comb(K, 2), ties)


def test_no_lease_is_left_open_and_every_ranking_closed_its_own(
    fresh_database: FreshDatabase, tally: Tally
) -> None:
    with fresh_database.session() as session:
        states = Counter(session.scalars(select(Assignment.state)))
        submitted = session.scalar(
            select(func.count())
            .select_from(Ranking)
            .join(Assignment, Assignment.id == Ranking.assignment_id)
            .where(
                Assignment.state == AssignmentState.submitted,
                Assignment.task_id == Ranking.task_id,
                Assignment.user_id == Ranking.user_id,
            )
        )
    assert states[AssignmentState.leased] == 0
    assert states[AssignmentState.skipped] == tally.skips
    assert states[AssignmentState.submitted] == submitted == len(tally.accepted)
