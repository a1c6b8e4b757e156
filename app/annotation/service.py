"""The annotation rules: which task an annotator gets, leases, and what a submit writes.

Queue invariant, per task: annotations_done + live leases <= required_annotations. Leasing
and submitting hold the task's row lock while they check and change it (PostgreSQL: FOR NO
KEY UPDATE, candidates taken with SKIP LOCKED; SQLite: BEGIN IMMEDIATE serialises writers).
A lease is live until expires_at; an expired one frees its slot at once (the counts ignore
it) and is marked `expired` by whoever meets it next.

Sample Elo: Chatbot Arena's convention (start 1000, scale 400, base 10) with K = K_FACTOR = 4
from app.ratings.elo, the same K as the version ratings so the two read on one scale. A sample
gets only (K-1) votes per annotation, so its Elo moves little; it orders a prompt's samples,
and the background Bradley-Terry fit is the number to report.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app import preparation
from app.annotation import repository
from app.annotation.schemas import (
    Counts,
    NextTaskOut,
    PromptOut,
    SampleOut,
    SkipOut,
    SubmitOut,
    SubmitRanking,
    SuggestionOut,
    TaskOut,
)
from app.db import utcnow
from app.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound
from app.judges import suggestions
from app.models import (
    Assignment,
    AssignmentState,
    Project,
    Ranking,
    RankingTask,
    TaskStatus,
    WebSession,
)
from app.models.sample import text_key
from app.projects.demonstrations import add_annotator_demonstration
from app.ratings import service as ratings
from app.ratings.elo import K_FACTOR, update
from app.ratings.pairs import InvalidRanking, Pair, ranking_to_pairs, validate_ranking
from app.sampling import service as sampling
from app.seeds import derived_seed

MAX_CANDIDATES = 20
"""Tasks one lease request tries after losing races for their last slot before giving up."""


class NotLeased(Conflict, code="not_leased"): ...


class AlreadySubmitted(Conflict, code="already_submitted"): ...


class TaskClosed(Conflict, code="task_closed"): ...


class ChooseProject(Conflict, code="choose_project"): ...


class LeaseExpired(AppError):
    """410: the lease existed but is gone; the page fetches a new task."""

    status_code = 410
    code = "lease_expired"


# Projects


@dataclass(frozen=True)
class AnnotatePage:
    projects: list[Project]
    project: Project | None
    """None when the user must pick one of several projects (or has none)."""
    task: TaskOut | None
    counts: Counts


def _resolve_project(projects: list[Project], chosen_project_id: int | None) -> Project | None:
    """The chosen project if the user is still a member, else their only project."""
    for project in projects:
        if project.id == chosen_project_id:
            return project
    return projects[0] if len(projects) == 1 else None


def annotate_page(
    session: Session, *, user_id: int, chosen_project_id: int | None, now: datetime | None = None
) -> AnnotatePage:
    """Read-only (a GET): the open lease is shown if there is one; the page asks for a task."""
    now = now or utcnow()
    projects = repository.member_projects(session, user_id)
    project = _resolve_project(projects, chosen_project_id)
    task = None
    if project is not None:
        for assignment, project_id in repository.leases_of(session, user_id):
            if project_id == project.id and assignment.expires_at > now:
                task = _task_view(session, assignment, user_id)
                break
    return AnnotatePage(projects, project, task, counts(session, user_id=user_id, now=now))


def choose_project(
    session: Session, *, web_session: WebSession, user_id: int, project_id: int
) -> Project:
    """Remember the choice on the browser session, so each browser can work on its own."""
    project = repository.member_project(session, user_id=user_id, project_id=project_id)
    if project is None:
        raise Forbidden(f"You are not a member of project {project_id}")
    web_session.project_id = project.id
    return project


# Queue


def next_task(
    session: Session, *, user_id: int, chosen_project_id: int | None, now: datetime | None = None
) -> NextTaskOut:
    """The user's open lease in the project, else a new lease, else no task."""
    now = now or utcnow()
    project = _resolve_project(repository.member_projects(session, user_id), chosen_project_id)
    if project is None:
        raise ChooseProject("Choose a project first")
    repository.lock_user(session, user_id)
    assignment = _own_open_lease(session, user_id=user_id, project_id=project.id, now=now)
    if assignment is None:
        assignment = _lease_new(session, project=project, user_id=user_id, now=now)
    if assignment is None:  # say what new tasks wait for, if anything is under way
        under_way = preparation.preparing(session, project)
        return NextTaskOut(
            task=None,
            counts=counts(session, user_id=user_id, now=now),
            preparing=under_way.line if under_way is not None else None,
        )
    task = _task_view(session, assignment, user_id)
    return NextTaskOut(task=task, counts=counts(session, user_id=user_id, now=now))


def following_task(session: Session, *, user_id: int, chosen_project_id: int | None) -> NextTaskOut:
    """The task the page shows after a submit or skip. Never raises: the answer it follows
    is in the same transaction and must not be rolled back for want of a next task."""
    try:
        return next_task(session, user_id=user_id, chosen_project_id=chosen_project_id)
    except ChooseProject:  # raised before anything is written
        return NextTaskOut(task=None, counts=counts(session, user_id=user_id))


def _own_open_lease(
    session: Session, *, user_id: int, project_id: int, now: datetime
) -> Assignment | None:
    """Asking again returns the same task; leases found expired are marked so on the way."""
    found = None
    stale = []
    for assignment, lease_project_id in repository.leases_of(session, user_id):
        if assignment.expires_at <= now:
            stale.append(assignment.id)
        elif found is None and lease_project_id == project_id:
            found = assignment
    if stale:
        repository.expire_leases(session, lease_ids=stale, now=now)
    return found


def gold_draw(*, user_id: int, lease_number: int, rate: float) -> bool:
    """Whether the user's `lease_number`-th lease in a project is a gold task: true with
    probability `rate`, the same answer every time it is asked (tests and replays agree)."""
    if rate <= 0:
        return False
    return random.Random(derived_seed(f"gold-lease:{user_id}", lease_number)).random() < rate


def _lease_new(
    session: Session, *, project: Project, user_id: int, now: datetime
) -> Assignment | None:
    """A gold task at the project's gold rate (one the user has not had), else the queue's
    next task with a free slot. Gold tasks never come through the slot path: they have none."""
    if project.gold_rate > 0 and gold_draw(
        user_id=user_id,
        lease_number=repository.lease_count(session, project_id=project.id, user_id=user_id),
        rate=project.gold_rate,
    ):
        gold_task_id = repository.lock_gold_candidate(
            session, project_id=project.id, user_id=user_id
        )
        if gold_task_id is not None:
            return _with_suggestion(
                session,
                project,
                _new_assignment(
                    session, project=project, task_id=gold_task_id, user_id=user_id, now=now
                ),
                gold=True,
            )
    tried: list[int] = []
    for _ in range(MAX_CANDIDATES):
        task_id = repository.lock_candidate(
            session, project_id=project.id, user_id=user_id, now=now, exclude=tried
        )
        if task_id is None:
            return None
        slot = repository.slot_state(session, task_id=task_id, user_id=user_id, now=now)
        being_submitted = 0  # expired by now, but their holder is submitting them in time
        if slot.stale:
            being_submitted = slot.stale - repository.expire_stale_leases(
                session, task_id=task_id, now=now
            )
        free = slot.required_annotations - slot.annotations_done - slot.live - being_submitted
        if slot.status == TaskStatus.open and free > 0 and not slot.done_by_user:
            return _with_suggestion(
                session,
                project,
                _new_assignment(
                    session, project=project, task_id=task_id, user_id=user_id, now=now
                ),
                gold=False,  # lock_candidate takes no gold task
            )
        tried.append(task_id)  # lost the race for its last slot; try the next task
    return None


def _new_assignment(
    session: Session, *, project: Project, task_id: int, user_id: int, now: datetime
) -> Assignment:
    assignment = Assignment(
        task_id=task_id,
        user_id=user_id,
        leased_at=now,
        expires_at=now + timedelta(minutes=project.lease_minutes),
    )
    session.add(assignment)
    session.flush()
    return assignment


def _with_suggestion(
    session: Session, project: Project, assignment: Assignment, *, gold: bool
) -> Assignment:
    """A person's lease: a judge's order 'shown' or 'hidden' (the control share) when
    suggestions are on, a judge ranked the task and it is not gold (app.judges.suggestions)."""
    suggestions.decide_suggestion(session, project=project, assignment=assignment, gold=gold)
    return assignment


def display_order(task_id: int, user_id: int, sample_ids: list[int]) -> list[int]:
    """The order this annotator sees, the same on every reload and different per annotator,
    so the first card is not the same sample (or version) for everyone."""
    digest = hashlib.blake2b(f"{task_id}:{user_id}".encode(), digest_size=8).digest()
    order = sorted(sample_ids)
    random.Random(int.from_bytes(digest, "big")).shuffle(order)
    return order


def _task_view(session: Session, assignment: Assignment, user_id: int) -> TaskOut:
    rows = repository.task_view_rows(session, assignment.task_id)
    if not rows:
        raise NotFound(f"Task {assignment.task_id} has no samples")
    project_id, prompt_text, messages, gold = rows[0][:4]
    texts = {sample_id: text for *_, sample_id, text in rows}
    order = display_order(assignment.task_id, user_id, list(texts))
    number = {sample_id: i for i, sample_id in enumerate(order, start=1)}
    judge_order = suggestions.shown_order(session, assignment)
    harm = suggestions.suggested_harm(session, order, gold=gold)
    return TaskOut(
        id=assignment.task_id,
        project_id=project_id,
        lease_expires_at=assignment.expires_at,
        prompt=PromptOut(text=prompt_text, messages=messages),
        samples=[
            SampleOut(
                id=sample_id,
                number=number[sample_id],
                text=texts[sample_id],
                suggested_harmful=harm.get(sample_id),
            )
            for sample_id in order
        ],
        suggestion=SuggestionOut(
            groups=judge_order,
            numbers=[[number[s] for s in group if s in number] for group in judge_order],
        )
        if judge_order
        else None,
    )


def counts(session: Session, *, user_id: int, now: datetime | None = None) -> Counts:
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today, total = repository.ranking_counts(session, user_id=user_id, since=midnight)
    return Counts(today=today, total=total)


# Submit and skip


def _check_lease(task: RankingTask, assignment: Assignment | None, now: datetime) -> Assignment:
    if assignment is None or assignment.state == AssignmentState.skipped:
        raise NotLeased(f"Task {task.id} is not leased to you; get a new task")
    if assignment.state == AssignmentState.submitted:
        raise AlreadySubmitted(f"You already submitted task {task.id}")
    if assignment.state == AssignmentState.expired or assignment.expires_at <= now:
        raise LeaseExpired(f"Your lease on task {task.id} expired; get a new task")
    if task.status != TaskStatus.open:
        raise TaskClosed(f"Task {task.id} is {task.status.value}; get a new task")
    return assignment


def _checked_groups(submission: SubmitRanking, sample_ids: list[int]) -> list[list[int]]:
    if submission.none_usable:
        if submission.groups:
            raise InvalidInput("A 'none usable' answer has no ranking; send no groups")
        if not submission.none_usable_reason:
            raise InvalidInput("Say why none is usable", details={"field": "none_usable_reason"})
        return []
    try:
        validate_ranking(submission.groups, sample_ids)
    except InvalidRanking as exc:
        raise InvalidInput(str(exc), details={"field": "groups"}) from None
    return [list(group) for group in submission.groups]


def _checked_flags(submission: SubmitRanking, sample_ids: list[int]) -> dict[int, str]:
    flags: dict[int, str] = {}
    for flag in submission.flags:
        if flag.sample_id not in sample_ids:
            raise InvalidInput(
                f"Flagged sample {flag.sample_id} is not in this task", details={"field": "flags"}
            )
        if flag.sample_id in flags:
            raise InvalidInput(
                f"Sample {flag.sample_id} is flagged twice", details={"field": "flags"}
            )
        flags[flag.sample_id] = flag.reason.strip()
    return flags


def submit_ranking(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    submission: SubmitRanking,
    now: datetime | None = None,
) -> SubmitOut:
    """One transaction: ranking, pairs, flags, the annotator's demonstration if they wrote one,
    ratings marker, task progress, sample Elo.

    Version ratings are refitted by the ratings job from all comparisons; updating one row
    per version here would make every submit of a project queue on the same rows.
    """
    now = now or utcnow()
    submitted = _store_ranking(
        session, task_id=task_id, user_id=user_id, submission=submission, now=now
    )
    return submitted.model_copy(update={"counts": counts(session, user_id=user_id, now=now)})


def submit_then_next(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    submission: SubmitRanking,
    chosen_project_id: int | None,
) -> tuple[SubmitOut, NextTaskOut]:
    """What the ranking page sends: the ranking, then the next task, in one transaction (the
    page swaps the next task in without a reload). The counters are read once.

    The next task is leased after the task's progress and Elo are written, not before: its
    candidate task stays locked to the end, and a submit holding one task's lock while waiting
    for another's would close a cycle of such submits (a deadlock). After those writes, leasing
    waits for no other annotator's rows: it skips locked tasks and leases."""
    submitted = _store_ranking(
        session, task_id=task_id, user_id=user_id, submission=submission, now=utcnow()
    )
    following = following_task(session, user_id=user_id, chosen_project_id=chosen_project_id)
    return submitted.model_copy(update={"counts": following.counts}), following


def _store_ranking(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    submission: SubmitRanking,
    now: datetime,
) -> SubmitOut:
    """The submit without the counters (`counts` left None).

    Lock order: this annotator's lease first, then their own rows (ranking, pairs, flags,
    demonstration, ratings marker), and the rows other annotators' submits share (the task's
    progress, the samples' Elo) in the last statements, so submits of one task wait for each
    other only for those."""
    assignment, task = _locked_own_lease(session, task_id=task_id, user_id=user_id)
    _check_lease(task, assignment, now)
    samples = repository.task_samples(session, task_id)
    version_of = {sample_id: version_id for sample_id, version_id, _ in samples}
    sample_ids = list(version_of)
    groups = _checked_groups(submission, sample_ids)
    flags = _checked_flags(submission, sample_ids)

    # The ranking
    elapsed_ms = int((now - assignment.leased_at).total_seconds() * 1000)
    shown = display_order(task_id, user_id, sample_ids)
    ranking = Ranking(
        project_id=task.project_id,
        task_id=task_id,
        user_id=user_id,
        assignment_id=assignment.id,
        groups=groups,
        display_order=shown,
        none_usable=submission.none_usable,
        none_usable_reason=submission.none_usable_reason if submission.none_usable else None,
        time_spent_ms=submission.time_spent_ms
        if submission.time_spent_ms is not None
        else elapsed_ms,
        suggestion=assignment.suggestion,  # the lease's: shown, hidden (control) or none
        created_at=now,
    )
    pairs = _record_ranking(session, ranking, assignment, task, samples, source="human")
    repository.insert_flags(
        session,
        [
            {"sample_id": sample_id, "user_id": user_id, "reason": reason, "created_at": now}
            for sample_id, reason in flags.items()
        ],
    )

    # The annotator's own answer, as an SFT demonstration
    if submission.demonstration:
        add_annotator_demonstration(
            session,
            project_id=task.project_id,
            prompt_id=task.prompt_id,
            response=submission.demonstration,
            author_id=user_id,
        )
    if pairs and not task.gold:  # gold rankings measure annotators; the ratings skip them
        ratings.note_new_rankings(session, project_id=task.project_id, now=now)

    # Shared rows, last: progress (a task closed meanwhile undoes the whole submit), Elo
    progress = repository.record_annotation(session, task_id=task_id, now=now)
    if progress is None:
        raise TaskClosed(f"Task {task_id} was closed; get a new task")
    status, gold = progress
    if pairs and gold != task.gold:  # marked or unmarked gold since the task was read
        repository.set_ranking_gold(session, ranking_id=ranking.id, gold=gold)
    if pairs and not gold:
        _update_sample_elo(session, pairs, now)
    if status == TaskStatus.complete:  # one open task fewer: sample more below the threshold
        sampling.note_task_closed(session, project_id=task.project_id)
    return SubmitOut(
        ranking_id=ranking.id,
        task_id=task_id,
        comparisons=len(pairs),
        ties=sum(pair.tie for pair in pairs),
        # a gold task never completes, but answers as a task of its required count would
        task_complete=status == TaskStatus.complete
        or (gold and task.annotations_done == task.required_annotations),
    )


def _record_ranking(
    session: Session,
    ranking: Ranking,
    assignment: Assignment,
    task: RankingTask,
    samples: Sequence[tuple[int, int, str]],
    *,
    source: str,
) -> list[Pair]:
    """The steps a person's submit and a judge's ranking share: the ranking row, its lease
    marked submitted, and its comparisons. Returns the pairs written.

    Pairs: every pair across groups, ties inside a group (docs/training-notes.md §Pairs),
    none between two samples of the same text (ratings and the reward model skip those)."""
    session.add(ranking)
    assignment.state = AssignmentState.submitted
    assignment.finished_at = ranking.created_at
    session.flush()
    version_of = {sample_id: version_id for sample_id, version_id, _ in samples}
    text_keys = {sample_id: text_key(text) for sample_id, _, text in samples}
    pairs = ranking_to_pairs(ranking.groups, text_keys=text_keys) if ranking.groups else []
    place = {sample_id: number for number, sample_id in enumerate(ranking.display_order, 1)}
    repository.insert_comparisons(
        session,
        project_id=ranking.project_id,
        ranking_id=ranking.id,
        task_id=task.id,
        prompt_id=task.prompt_id,
        user_id=ranking.user_id,
        created_at=ranking.created_at,
        gold=task.gold,
        source=source,
        pairs=[
            (
                pair.winner,
                pair.loser,
                version_of[pair.winner],
                version_of[pair.loser],
                pair.tie,
                place[pair.winner],
                place[pair.loser],
            )
            for pair in pairs
        ],
    )
    return pairs


def _locked_own_lease(
    session: Session, *, task_id: int, user_id: int
) -> tuple[Assignment, RankingTask]:
    """The user's latest assignment on the task, locked, with the task; else 404 or 409."""
    found = repository.lock_own_lease(session, task_id=task_id, user_id=user_id)
    if found is None:
        if repository.get_task(session, task_id) is None:
            raise NotFound(f"No task {task_id}")
        raise NotLeased(f"Task {task_id} is not leased to you; get a new task")
    return found


def _update_sample_elo(session: Session, pairs: list[Pair], now: datetime) -> None:
    """Online Elo over the ranking's pairs, best group first (the order ranking_to_pairs gives)."""
    sample_ids = [sample_id for pair in pairs for sample_id in (pair.winner, pair.loser)]
    elo = repository.lock_elo(session, sample_ids, now)
    seen: Counter[int] = Counter()
    for pair in pairs:
        elo[pair.winner], elo[pair.loser] = update(
            elo[pair.winner], elo[pair.loser], 0.5 if pair.tie else 1.0, K_FACTOR
        )
        seen.update((pair.winner, pair.loser))
    repository.store_elo(session, elo, dict(seen), now)


def skip_task(
    session: Session, *, task_id: int, user_id: int, now: datetime | None = None
) -> SkipOut:
    """The task is not offered to this user again and frees their slot; no annotation."""
    now = now or utcnow()
    assignment, _ = _locked_own_lease(session, task_id=task_id, user_id=user_id)
    if assignment.state == AssignmentState.submitted:
        raise AlreadySubmitted(f"You already submitted task {task_id}")
    if assignment.state != AssignmentState.skipped:  # a second skip changes nothing
        assignment.state = AssignmentState.skipped
        assignment.finished_at = now
    return SkipOut(task_id=task_id)


# Model judges (app/judges): the same queue and the same rows, marked AI, holding no slot


def lease_for_model(
    session: Session,
    *,
    project: Project,
    user_id: int,
    judge_id: int,
    share: float,
    unreached_only: bool,
    now: datetime,
) -> Assignment | None:
    """A new lease for a judge's users row, or None. Each call leases another task (a judge
    may run several workers); its own expired leases are marked so first, making their tasks
    leasable again. The lease takes no person's slot: the slot counts skip judges' leases."""
    repository.lock_user(session, user_id)
    stale = [a.id for a, _ in repository.leases_of(session, user_id) if a.expires_at <= now]
    if stale:
        repository.expire_leases(session, lease_ids=stale, now=now)
    task_id = repository.judge_candidate(
        session,
        project_id=project.id,
        user_id=user_id,
        judge_id=judge_id,
        share=share,
        unreached_only=unreached_only,
        now=now,
    )
    if task_id is None:
        return None
    return _new_assignment(session, project=project, task_id=task_id, user_id=user_id, now=now)


def store_model_ranking(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    judge_id: int,
    prompt_version: int,
    groups: list[list[int]],
    harmful: dict[int, str],
    elapsed_ms: int,
    now: datetime,
) -> int:
    """A judge's ranking: the ranking and its pairs marked 'ai' with the judge and its prompt
    version, harm as a suggested flag. Unlike a person's submit it writes no task progress,
    no sample Elo and no ratings marker (those are people's figures), and a lease that ran
    out still counts: it held no slot. Returns the ranking id."""
    assignment, task = _locked_own_lease(session, task_id=task_id, user_id=user_id)
    if assignment.state == AssignmentState.submitted:
        raise AlreadySubmitted(f"The judge already ranked task {task_id}")
    if assignment.state == AssignmentState.skipped:
        raise NotLeased(f"Task {task_id} was skipped by the judge")
    if task.status == TaskStatus.cancelled:
        raise TaskClosed(f"Task {task_id} was cancelled")
    samples = repository.task_samples(session, task_id)
    version_of = {sample_id: version_id for sample_id, version_id, _ in samples}
    sample_ids = list(version_of)
    try:
        validate_ranking(groups, sample_ids)
    except InvalidRanking as exc:
        raise InvalidInput(str(exc), details={"field": "groups"}) from None
    unknown = sorted(set(harmful) - set(sample_ids))
    if unknown:
        raise InvalidInput(f"Flagged samples {unknown} are not in task {task_id}")
    shown = display_order(task_id, user_id, sample_ids)
    ranking = Ranking(
        project_id=task.project_id,
        task_id=task_id,
        user_id=user_id,
        assignment_id=assignment.id,
        groups=[list(group) for group in groups],
        display_order=shown,
        time_spent_ms=elapsed_ms,
        source="ai",
        judge_id=judge_id,
        judge_prompt_version=prompt_version,
        created_at=now,
    )
    _record_ranking(session, ranking, assignment, task, samples, source="ai")
    repository.insert_flags(
        session,
        [
            {
                "sample_id": sample_id,
                "user_id": user_id,
                "kind": "suggested_harmful",
                "reason": reason.strip()[:1000],
                "created_at": now,
            }
            for sample_id, reason in harmful.items()
        ],
    )
    return ranking.id


def skip_for_model(session: Session, *, task_id: int, user_id: int, now: datetime) -> None:
    """The judge gave up on the task (malformed output, timeouts): it is not leased again."""
    assignment, _ = _locked_own_lease(session, task_id=task_id, user_id=user_id)
    if assignment.state == AssignmentState.submitted:
        raise AlreadySubmitted(f"The judge already ranked task {task_id}")
    assignment.state = AssignmentState.skipped
    assignment.finished_at = now
