"""Simulated annotators: scripted people who log in and rank over real HTTP.

They use exactly the endpoints a browser uses (the login form with its pre-login CSRF cookie,
then `POST /annotate/next` and `POST /annotate/tasks/{id}/submit` with the session's CSRF
token in `X-CSRF-Token`), so a rehearsal exercises leases, membership checks and the unit of
work as people would. Tasks arrive as JSON (`Accept: application/json`, shapes in
app/annotation/schemas.py); the CSRF token is read from the `hx-headers` attribute the pages
put on `<body>` for HTMX.

One thread per annotator, each with its own cookies and random stream.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any

import httpx

from app.budget import TaskBudget
from app.simulation.preferences import AnnotatorModel, Preference, rank

PRELOGIN_COOKIE = "rankloop_csrf"
JSON = {"Accept": "application/json"}
# Answers that mean "this task went away under me" (another annotator filled it, the lease
# expired): take the next task rather than stop.
RETRYABLE = {409, 410}


class SimulationError(RuntimeError):
    """The server refused a simulated annotator (bad login, not a member, a 4xx/5xx)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class SimulatedTask:
    id: int
    prompt: str
    sample_ids: list[int]
    texts: list[str]


@dataclass
class AnnotatorResult:
    username: str
    submitted: int = 0
    lost: int = 0
    """Tasks that went away between lease and submit (409/410), then skipped."""
    error: str | None = None


@dataclass
class SimulationResult:
    annotators: list[AnnotatorResult] = field(default_factory=list)

    @property
    def submitted(self) -> int:
        return sum(a.submitted for a in self.annotators)

    @property
    def errors(self) -> list[str]:
        return [f"{a.username}: {a.error}" for a in self.annotators if a.error]


class _BodyHeaders(HTMLParser):
    """Finds the JSON in `<body hx-headers='…'>` (where the page keeps its CSRF token)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            raw = dict(attrs).get("hx-headers")
            if raw:
                self.headers = json.loads(raw)


def csrf_from_page(html: str) -> str:
    parser = _BodyHeaders()
    parser.feed(html)
    token = parser.headers.get("X-CSRF-Token")
    if not token:
        raise SimulationError("The page carries no CSRF token: is the login still valid?")
    return token


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


class AnnotatorClient:
    """One browser-like session: cookies, CSRF token, the chosen project."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def login(self, credentials: Credentials) -> None:
        self.http.get("/login").raise_for_status()
        response = self.http.post(
            "/login",
            data={
                "username": credentials.username,
                "password": credentials.password,
                "csrf_token": self.http.cookies.get(PRELOGIN_COOKIE) or "",
            },
            follow_redirects=False,
        )
        if response.status_code != 303:
            raise SimulationError(
                f"Login of {credentials.username} failed ({response.status_code})"
            )
        self.csrf = csrf_from_page(self.http.get("/").text)

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers={"X-CSRF-Token": self.csrf, **JSON}, **kwargs)

    def choose_project(self, project_id: int) -> None:
        response = self._post("/annotate/project", data={"project_id": project_id})
        if response.status_code >= 400:
            raise SimulationError(_error_message(response))

    def next_task(self) -> SimulatedTask | None:
        response = self._post("/annotate/next")
        if response.status_code >= 400:
            raise SimulationError(_error_message(response))
        task = response.json()["task"]
        if task is None:
            return None
        prompt = task["prompt"]
        text = prompt["text"]
        if prompt.get("messages"):
            text = "\n".join(m["content"] for m in prompt["messages"])
        samples = task["samples"]
        return SimulatedTask(
            id=task["id"],
            prompt=text,
            sample_ids=[s["id"] for s in samples],
            texts=[s["text"] for s in samples],
        )

    def submit(self, task_id: int, groups: list[list[int]], time_spent_ms: int) -> bool:
        """True when stored; False when the task went away (409/410); raises otherwise."""
        response = self._post(
            f"/annotate/tasks/{task_id}/submit",
            json={"groups": groups, "time_spent_ms": time_spent_ms},
        )
        if response.status_code in RETRYABLE:
            return False
        if response.status_code >= 400:
            raise SimulationError(_error_message(response))
        return True


def annotator_models(count: int, *, noise: float, bias: float, seed: int) -> list[AnnotatorModel]:
    """Per-person deviations: all share the Bradley-Terry noise (temperature), each draws a
    length bias from N(0, bias), as real teams disagree on how much length is worth."""
    rng = random.Random(seed)
    return [
        AnnotatorModel(temperature=noise, bias=rng.gauss(0.0, bias) if bias > 0 else 0.0)
        for _ in range(count)
    ]


# Mixed crowds (issue 22): shares of people at multiples of the noise, or reversed.

MIXED_CROWD = "60:1,30:3,10:reversed"
"""60 % at the given noise, 30 % at three times it, 10 % ranking by the negated preference:
the crowd of the efficiency benchmark (bench/efficiency.py)."""
CROWDS = {"mixed": MIXED_CROWD}


@dataclass(frozen=True)
class CrowdGroup:
    """A share of the crowd: `share` parts at `noise_factor` times the noise, or reversed
    (at the noise itself: an adversary who knows the preference ranks it upside down)."""

    share: float
    noise_factor: float = 1.0
    reversed: bool = False


def parse_crowd(spec: str) -> list[CrowdGroup]:
    """'mixed' or 'SHARE:FACTOR|reversed,…' (e.g. '60:1,30:3,10:reversed'); shares are
    relative (need not sum to 100). Raises ValueError saying what is wrong."""
    spec = CROWDS.get(spec.strip(), spec)
    groups: list[CrowdGroup] = []
    for part in spec.split(","):
        where = part.strip()
        share, colon, kind = where.partition(":")
        if not colon:
            raise ValueError(
                f"Bad crowd part {where!r}: expected SHARE:NOISE_FACTOR or "
                f"SHARE:reversed, e.g. {MIXED_CROWD} (or 'mixed')"
            )
        try:
            weight = float(share)
        except ValueError:
            raise ValueError(f"Bad crowd share {share!r} in {where!r}: not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"Bad crowd share {share!r} in {where!r}: must be above 0")
        kind = kind.strip().lower()
        if kind == "reversed":
            groups.append(CrowdGroup(weight, reversed=True))
            continue
        try:
            factor = float(kind)
        except ValueError:
            raise ValueError(
                f"Bad crowd kind {kind!r} in {where!r}: a noise factor (e.g. 3) or 'reversed'"
            ) from None
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"Bad noise factor {kind!r} in {where!r}: must be 0 or more")
        groups.append(CrowdGroup(weight, noise_factor=factor))
    return groups


def crowd_counts(count: int, groups: Sequence[CrowdGroup]) -> list[int]:
    """People per group: largest remainders of count × share, ties to the earlier group, so
    10 of '60:1,30:3,10:reversed' are exactly 6, 3 and 1."""
    total = sum(g.share for g in groups)
    exact = [count * g.share / total for g in groups]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(groups)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return counts


def crowd_models(
    count: int, crowd: str | Sequence[CrowdGroup], *, noise: float, bias: float, seed: int
) -> list[AnnotatorModel]:
    """`count` people in the crowd's proportions, in an order shuffled by `seed` (which login
    is reversed varies with the seed, never with the run's length); length biases as
    `annotator_models` draws them."""
    groups = parse_crowd(crowd) if isinstance(crowd, str) else list(crowd)
    kinds = [g for g, n in zip(groups, crowd_counts(count, groups), strict=True) for _ in range(n)]
    random.Random(f"crowd:{seed}").shuffle(kinds)
    people = annotator_models(count, noise=noise, bias=bias, seed=seed)
    return [
        replace(
            person,
            temperature=noise if kind.reversed else noise * kind.noise_factor,
            reversed=kind.reversed,
        )
        for person, kind in zip(people, kinds, strict=True)
    ]


NO_TASK_RETRIES = 3
"""Asking again after "no task" (0.2 s, 0.4 s, 0.6 s later): with many annotators on few tasks,
a task whose row another annotator's lease holds locked is skipped (SKIP LOCKED) for that
instant, as a person would see "no task" and reload; only repeated answers mean the work is
done."""


def _next_task_after_retries(client: AnnotatorClient) -> SimulatedTask | None:
    for attempt in range(NO_TASK_RETRIES + 1):
        task = client.next_task()
        if task is not None or attempt == NO_TASK_RETRIES:
            return task
        time.sleep(0.2 * (attempt + 1))
    return None


def _work(
    base_url: str,
    credentials: Credentials,
    person: AnnotatorModel,
    preference: Preference,
    *,
    project_id: int | None,
    seed: int,
    budget: TaskBudget,
    result: AnnotatorResult,
) -> None:
    rng = random.Random(seed)
    client = AnnotatorClient(base_url)
    try:
        client.login(credentials)
        if project_id is not None:
            client.choose_project(project_id)
        while budget.take():
            task = _next_task_after_retries(client)
            if task is None:
                budget.give_back()
                return
            groups = rank(task.texts, task.sample_ids, preference, person, rng)
            time_spent_ms = int(rng.uniform(4000, 30000))  # what a person would take
            if client.submit(task.id, groups, time_spent_ms):
                result.submitted += 1
            else:
                result.lost += 1
                budget.give_back()
    except (SimulationError, httpx.HTTPError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        client.close()


def run_annotators(
    base_url: str,
    credentials: Sequence[Credentials],
    preference: Preference,
    *,
    project_id: int | None = None,
    noise: float = 0.5,
    bias: float = 0.0,
    seed: int = 0,
    max_tasks: int | None = None,
    crowd: str | Sequence[CrowdGroup] | None = None,
    people: Sequence[AnnotatorModel] | None = None,
) -> SimulationResult:
    """Rank until no task is left for anyone (or `max_tasks` submissions); one thread each.

    `noise` is the Bradley-Terry temperature: a pair whose preference scores differ by d is
    ordered right with probability σ(d / noise); 0 ranks exactly by the preference. `crowd`
    mixes kinds of people (`parse_crowd`); None: everyone at `noise`. `people` (one per login)
    overrides both, for a caller that keeps one crowd over several calls.
    """
    if people is None:
        people = (
            annotator_models(len(credentials), noise=noise, bias=bias, seed=seed)
            if crowd is None
            else crowd_models(len(credentials), crowd, noise=noise, bias=bias, seed=seed)
        )
    budget = TaskBudget(max_tasks)
    result = SimulationResult([AnnotatorResult(c.username) for c in credentials])
    threads = [
        threading.Thread(
            target=_work,
            args=(base_url, creds, person, preference),
            kwargs={
                "project_id": project_id,
                "seed": seed * 1000 + i + 1,
                "budget": budget,
                "result": result.annotators[i],
            },
            name=f"annotator-{creds.username}",
            daemon=True,
        )
        for i, (creds, person) in enumerate(zip(credentials, people, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result
