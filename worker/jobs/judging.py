"""Run a model judge over its project's queue: lease → judge → record, until nothing is left.

A judge works the queue as a person does (app/judges/service.py holds the rules: overlap,
share, never a human slot). Each lease and each record is its own short transaction; the model
call runs outside any transaction, so a slow endpoint holds no row lock. `judge.concurrency`
threads run the loop side by side (each with its own sessions); the endpoint's rate limit is
the backend's (worker/judging).

Failures, by kind:
- malformed output (after the backend's retries), or another refusal of one task (an
  endpoint's 4xx, a prompt too long): the task is skipped with the reason stored, and the judge
  never leases it again; REFUSALS_IN_A_ROW such refusals without a ranking between them pause
  the judge (a wrong key or model name refuses every task alike);
- the endpoint unavailable (timeouts, 429s, 5xx outlasting the backend's backoff): the run
  stops and leaves the task for later. The Celery task sends the run again after a pause
  (UNAVAILABLE_RETRY_S, doubled each time); after UNAVAILABLE_RUNS runs in a row end so, the
  judge is paused with the reason, and resuming it starts a new run;
- the key's environment variable missing, or the judge failing to load: paused with the reason
  (nothing a retry would fix).

A judge counted in the project's human figures (projects.judges_in_human_figures) refreshes
the ratings after each ranking as a person's submit does; otherwise its rankings leave them be.

The API key is read from the worker's environment into the spec and goes no further: it is
never logged, stored or put in a reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.service import AlreadySubmitted
from app.budget import TaskBudget
from app.db import session_scope
from app.judges import pausing
from app.judges import service as judges
from app.models import Judge as JudgeRow
from app.models import RankingTask
from app.ratings import repository as ratings_repository
from app.ratings import service as ratings
from worker.judging import (
    EndpointUnavailable,
    Judge,
    JudgeError,
    JudgeInput,
    JudgeSpec,
    MalformedOutput,
    make_judge,
)

logger = logging.getLogger(__name__)

LOG_EVERY = 20
"""Rankings between progress log lines and agreement-floor checks."""
UNAVAILABLE_RUNS = 3
"""Runs in a row ended by an unavailable endpoint before the judge is paused."""
UNAVAILABLE_RETRY_S = 60.0
"""Pause before the first re-run after an unavailable endpoint (doubled each time)."""
REFUSALS_IN_A_ROW = 3
"""Tasks refused (other than malformed) in a row, without a ranking, before the judge is paused."""
MAX_REASON = 500


@dataclass
class JudgeRunReport:
    """What one run did; `stopped` says why it ended."""

    judge_id: int
    ranked: int = 0
    skipped: int = 0
    position_checks: int = 0
    seconds: float = 0.0
    stopped: str = "no task"
    """'no task', 'max tasks', 'paused' (before or during the run), 'unavailable', or 'gone'
    (the judge was deleted)."""
    reason: str | None = None
    """Why it was paused or found the endpoint unavailable (safe to show: no key)."""
    retry_in: float | None = None
    """Seconds after which the run should be sent again (an unavailable endpoint), else None."""

    @property
    def rankings_per_second(self) -> float:
        return self.ranked / self.seconds if self.seconds > 0 else 0.0


def _reason(text: str) -> str:
    line = " ".join(text.split())
    return line[:MAX_REASON]


def judge_spec(row: JudgeRow) -> JudgeSpec | str:
    """The backend's spec, or why the judge cannot run (its key's variable is missing)."""
    api_key = None
    if row.api_key_env:
        api_key = os.environ.get(row.api_key_env) or None
        if api_key is None:
            return f"environment variable {row.api_key_env} is not set on the judging worker"
    return JudgeSpec(
        backend=row.backend,
        model=row.model,
        method=row.method,
        prompt_template=row.prompt_template,
        principles=[str(p) for p in row.principles],
        base_url=row.base_url,
        api_key=api_key,
        timeout_s=row.timeout_s,
        max_attempts=row.max_attempts,
        requests_per_minute=row.requests_per_minute,
        flag_harm=row.flag_harm,
        options=dict(row.options),
    )


def _refresh_ratings(session: Session, *, project_id: int, task_id: int) -> None:
    """A judge counted in the project's human figures moves the ratings as a person's ranking
    does: the project is marked dirty and the debounced recompute is sent once this transaction
    commits. Otherwise judge rankings leave the ratings alone. A gold task's rankings measure
    raters and never rate versions."""
    if ratings_repository.figure_raters(session, project_id) != "all":
        return
    if session.scalar(select(RankingTask.gold).where(RankingTask.id == task_id)):
        return
    ratings.note_new_rankings(session, project_id=project_id)


def _pause(judge_id: int, reason: str) -> None:
    with session_scope() as session:
        judges.pause_judge(session, judge_id=judge_id, reason=_reason(reason))


class _Run:
    """The shared state of one run's threads."""

    def __init__(self, row: JudgeRow, judge: Judge, spec: JudgeSpec, max_tasks: int | None) -> None:
        self.judge_id = row.id
        self.project_id = row.project_id
        self.judge = judge
        self.max_attempts = spec.max_attempts
        self.budget = TaskBudget(max_tasks)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.report = JudgeRunReport(judge_id=row.id)
        self.started = time.perf_counter()
        self.errors: list[BaseException] = []
        self.refusals = 0

    # One thread's loop

    def work(self) -> None:
        try:
            while not self.stop.is_set() and self.budget.take():
                if not self._one_task():
                    self.budget.give_back()
                    return
        except BaseException as exc:  # re-raised by run_judge in the calling thread
            self.errors.append(exc)
            self.stop.set()

    def _one_task(self) -> bool:
        """Lease, judge and record one task; False when there was none to lease."""
        with session_scope() as session:
            lease = judges.lease_for_judge(session, judge_id=self.judge_id)
        if lease is None:
            return False
        item = JudgeInput(
            prompt=lease.prompt, samples=list(lease.samples), guidelines=lease.guidelines
        )
        started = time.perf_counter()
        try:
            verdict = self.judge.judge(item)
        except EndpointUnavailable as exc:
            # The lease is left to expire (a judge's lease holds no human slot); the task
            # stays eligible for the next run.
            self._unavailable(str(exc))
            return True
        except MalformedOutput as exc:
            self._skip(lease.task_id, str(exc), getattr(exc, "attempts", self.max_attempts))
            return True
        except JudgeError as exc:  # any other refusal of this one task (e.g. too long)
            self._skip(lease.task_id, str(exc), 1)
            self._refused(str(exc))
            return True
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        try:
            with session_scope() as session:
                judges.record_judgement(
                    session,
                    judge_id=self.judge_id,
                    task_id=lease.task_id,
                    groups=verdict.groups,
                    harmful=verdict.harmful,
                    elapsed_ms=elapsed_ms,
                    attempts=verdict.attempts,
                )
                _refresh_ratings(session, project_id=self.project_id, task_id=lease.task_id)
        except AlreadySubmitted:
            # This judge's lease ran out while it judged and another of its workers took the
            # task and ranked it first: that ranking stands, this verdict is dropped.
            logger.info("judge %s: task %s was ranked meanwhile", self.judge_id, lease.task_id)
            return True
        if lease.position_check:
            self._position_check(lease.task_id, item)
        self._ranked()
        return True

    def _position_check(self, task_id: int, item: JudgeInput) -> None:
        """The same task with the samples in reversed order: does the verdict flip?"""
        flipped = JudgeInput(
            prompt=item.prompt, samples=item.samples[::-1], guidelines=item.guidelines
        )
        try:
            verdict = self.judge.judge(flipped)
        except EndpointUnavailable as exc:
            self._unavailable(str(exc))
            return
        except JudgeError as exc:  # the ranking stands; only the check is lost
            logger.info(
                "judge %s: position check of task %s failed: %s", self.judge_id, task_id, exc
            )
            return
        with session_scope() as session:
            judges.record_position_check(
                session, judge_id=self.judge_id, task_id=task_id, reversed_groups=verdict.groups
            )
        with self.lock:
            self.report.position_checks += 1

    def _skip(self, task_id: int, reason: str, attempts: int) -> None:
        with session_scope() as session:
            judges.record_skip(
                session,
                judge_id=self.judge_id,
                task_id=task_id,
                reason=_reason(reason),
                attempts=attempts,
            )
        with self.lock:
            self.report.skipped += 1
        logger.info("judge %s skipped task %s after %s attempts", self.judge_id, task_id, attempts)

    def _refused(self, reason: str) -> None:
        with self.lock:
            self.refusals += 1
            refusals = self.refusals
        if refusals >= REFUSALS_IN_A_ROW:
            _pause(self.judge_id, f"{refusals} tasks refused in a row: {reason}")
            self.stop.set()

    def _unavailable(self, reason: str) -> None:
        with self.lock:
            self.report.stopped = "unavailable"
            self.report.reason = _reason(reason)
        self.stop.set()

    def _ranked(self) -> None:
        with self.lock:
            self.report.ranked += 1
            self.refusals = 0
            ranked = self.report.ranked
        if ranked % LOG_EVERY:
            return
        seconds = time.perf_counter() - self.started
        logger.info(
            "judge %s: %s rankings, %s skipped, %.2f rankings/s",
            self.judge_id,
            ranked,
            self.report.skipped,
            ranked / seconds if seconds > 0 else 0.0,
        )
        self._check_floor()

    def _check_floor(self) -> None:
        """Pause judges that people disagree with; a paused judge leases nothing more."""
        with session_scope() as session:
            paused = pausing.enforce_agreement_floor(session, project_id=self.project_id)
        if self.judge_id in paused:
            self.stop.set()


def run_judge(
    judge_id: int, *, max_tasks: int | None = None, unavailable_runs: int = 0
) -> JudgeRunReport:
    """Judge the tasks the judge may lease (at most `max_tasks`); `unavailable_runs`: runs in
    a row before this one that an unavailable endpoint ended (the Celery task counts them)."""
    with session_scope(readonly=True) as session:
        row = session.get(JudgeRow, judge_id)
        if row is not None:
            session.expunge(row)
    if row is None:  # deleted (with its project) after the run was sent: nothing to do
        return JudgeRunReport(judge_id=judge_id, stopped="gone")
    if row.state == "paused":
        return JudgeRunReport(judge_id=judge_id, stopped="paused", reason=row.paused_reason)
    spec = judge_spec(row)
    if isinstance(spec, str):
        _pause(judge_id, spec)
        return JudgeRunReport(judge_id=judge_id, stopped="paused", reason=spec)
    try:
        judge = make_judge(spec)
    except JudgeError as exc:
        _pause(judge_id, f"the judge could not start: {exc}")
        return JudgeRunReport(judge_id=judge_id, stopped="paused", reason=_reason(str(exc)))
    except Exception as exc:  # e.g. a model path that does not exist: no retry fixes it
        reason = f"the judge could not start: {type(exc).__name__}: {exc}"
        logger.exception("judge %s could not start", judge_id)
        _pause(judge_id, reason)
        return JudgeRunReport(judge_id=judge_id, stopped="paused", reason=_reason(reason))

    run = _Run(row, judge, spec, max_tasks)
    threads = [
        threading.Thread(target=run.work, name=f"judge-{judge_id}-{n}", daemon=True)
        for n in range(max(1, row.concurrency))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if run.errors:
        raise run.errors[0]
    report = run.report
    report.seconds = time.perf_counter() - run.started
    if report.ranked % LOG_EVERY:
        run._check_floor()  # the last partial batch is measured too
    with session_scope(readonly=True) as session:
        now = session.get(JudgeRow, judge_id)
        state, paused_reason = (now.state, now.paused_reason) if now else ("paused", None)
    if report.stopped == "unavailable":
        if unavailable_runs + 1 >= UNAVAILABLE_RUNS:
            _pause(
                judge_id,
                f"the endpoint was unavailable {UNAVAILABLE_RUNS} runs in a row: {report.reason}",
            )
            report.stopped = "paused"
        else:
            report.retry_in = UNAVAILABLE_RETRY_S * 2**unavailable_runs
    elif state == "paused":
        report.stopped, report.reason = "paused", paused_reason
    elif run.budget.spent:
        report.stopped = "max tasks"
    logger.info(
        "judge %s run ended (%s): %s rankings, %s skipped, %s position checks in %.1f s",
        judge_id,
        report.stopped,
        report.ranked,
        report.skipped,
        report.position_checks,
        report.seconds,
    )
    return report
