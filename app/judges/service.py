"""Judge rules: adding and editing judges, pausing, and how a judge works the queue.

A judge ranks through the people's queue (app/annotation/service.py) with its own users row
(kind 'model', a password hash nothing verifies against), so its leases and rankings are the
same rows, marked AI. It never holds a person's slot, never counts toward a task's
annotations, and never moves sample Elo. The judging job (worker/jobs/judging.py) calls
`lease_for_judge`, asks the backend, then `record_judgement` or `record_skip`.
"""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app.annotation import repository as queue
from app.annotation import service as annotation
from app.db import after_commit, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs import JUDGING_RUN, enqueue
from app.judges import repository
from app.judges.default_prompt import DEFAULT_JUDGE_TEMPLATE
from app.judges.measurement import measures_for_project
from app.judges.schemas import JudgeCreate, JudgeUpdate, form_fields
from app.models import Judge, JudgeTaskLog, Project, ProjectMember, Role, User
from app.projects.service import flatten_conversation, require_project
from app.seeds import derived_seed

logger = logging.getLogger(__name__)

UNUSABLE_PASSWORD = "!model-judge"
"""Not an argon2 hash: verify_password is always false for it (and `authenticate` also
refuses users of kind 'model')."""

_PROMPT_FIELDS = ("prompt_template", "principles")
_NULLABLE = frozenset(
    {"base_url", "api_key_env", "requests_per_minute", "agreement_floor", "relative_floor"}
)


class JudgeNameTaken(Conflict, code="judge_name_taken"): ...


# Judges


def get_judge(session: Session, judge_id: int) -> Judge:
    judge = repository.get_judge(session, judge_id)
    if judge is None:
        raise NotFound(f"No judge {judge_id}")
    return judge


def list_judges(session: Session, *, project_id: int) -> list[Judge]:
    require_project(session, project_id)
    return repository.list_judges(session, project_id=project_id)


def create_judge(
    session: Session, *, project_id: int, data: JudgeCreate, created_by_id: int | None
) -> Judge:
    """The judge, its users row (kind 'model', annotator, a project member), and a run of the
    judging job once this transaction commits."""
    project = require_project(session, project_id)
    if repository.judge_named(session, project_id=project.id, name=data.name) is not None:
        raise JudgeNameTaken(f"Project {project.id} already has a judge named {data.name!r}")
    user = User(
        # Human usernames cannot contain ':' (app/accounts/service.py), so this never clashes.
        username=f"judge:{project.id}:{secrets.token_hex(6)}",
        display_name=f"{data.name} (model judge)"[:128],
        role=Role.annotator,
        kind="model",
        password_hash=UNUSABLE_PASSWORD,
    )
    session.add(user)
    session.flush()
    session.add(ProjectMember(project_id=project.id, user_id=user.id))
    now = utcnow()
    judge = Judge(
        project_id=project.id,
        user_id=user.id,
        prompt_version=1,
        state="active",
        created_at=now,
        updated_at=now,
        **data.model_dump(),
    )
    session.add(judge)
    session.flush()
    logger.info(
        "judge %s added to project %s by user %s (%s, %s)",
        judge.id,
        project.id,
        created_by_id,
        judge.backend,
        judge.method,
    )
    _send_after_commit(session, judge.id)
    return judge


def update_judge(session: Session, *, judge_id: int, data: JudgeUpdate) -> Judge:
    """Only the fields sent change; a new template or principles make a new prompt version,
    so rankings can be told apart by the prompt that made them."""
    judge = _locked(session, judge_id)
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            raise InvalidInput(f"{name} cannot be empty", details={"field": name})
    if "name" in changes and changes["name"].lower() != judge.name.lower():
        if repository.judge_named(session, project_id=judge.project_id, name=changes["name"]):
            raise JudgeNameTaken(f"The project already has a judge named {changes['name']!r}")
    backend = changes.get("backend", judge.backend)
    if backend == "openai" and not changes.get("base_url", judge.base_url):
        raise InvalidInput("An 'openai' judge needs a base_url", details={"field": "base_url"})
    if changes.get("method", judge.method) == "logprob" and backend == "openai":
        raise InvalidInput(
            "Scoring by log-probabilities needs a local ('hf') model", details={"field": "method"}
        )
    if any(name in changes and changes[name] != getattr(judge, name) for name in _PROMPT_FIELDS):
        judge.prompt_version += 1
    for name, value in changes.items():
        setattr(judge, name, value)
    judge.updated_at = utcnow()
    session.flush()
    return judge


def pause_judge(session: Session, *, judge_id: int, reason: str) -> Judge:
    """It leases nothing more; its open leases run out (they hold no slot)."""
    judge = _locked(session, judge_id)
    reason = reason.strip() or "Paused"
    judge.state = "paused"
    judge.paused_reason = reason[:500]
    judge.updated_at = utcnow()
    session.flush()
    return judge


def resume_judge(session: Session, *, judge_id: int) -> Judge:
    judge = _locked(session, judge_id)
    judge.state = "active"
    judge.paused_reason = None
    judge.updated_at = utcnow()
    session.flush()
    _send_after_commit(session, judge.id)
    return judge


def _locked(session: Session, judge_id: int) -> Judge:
    judge = repository.lock_judge(session, judge_id)
    if judge is None:
        raise NotFound(f"No judge {judge_id}")
    return judge


# Jobs


def send_judge_run(judge_id: int) -> None:
    """After commit: a broker failure must not undo the change that asked for the run; the
    next create, resume or sampling job asks again."""
    try:
        enqueue(JUDGING_RUN, judge_id)
    except Exception:
        logger.exception("could not send %s for judge %s", JUDGING_RUN, judge_id)


def _send_after_commit(session: Session, judge_id: int) -> None:
    after_commit(session, lambda: send_judge_run(judge_id))


def note_new_tasks(session: Session, *, project_id: int) -> list[int]:
    """New tasks exist (a sampling job finished): each active judge gets a run after commit."""
    judge_ids = repository.active_judge_ids(session, project_id=project_id)
    for judge_id in judge_ids:
        _send_after_commit(session, judge_id)
    return judge_ids


# The queue


@dataclass
class JudgeLease:
    """What the judging job needs to ask the backend about one task."""

    assignment_id: int
    task_id: int
    prompt: str
    guidelines: str
    samples: list[tuple[int, str]]
    """(sample id, text) in the order the judge is shown them."""
    position_check: bool
    """Also judge the samples in reversed order, then call `record_position_check`."""


def position_check_draw(*, judge_id: int, task_id: int, share: float) -> bool:
    """Whether this task is one the judge also ranks in reversed order (the same every time)."""
    if share <= 0:
        return False
    return random.Random(derived_seed(f"judge-position:{judge_id}", task_id)).random() < share


def lease_for_judge(
    session: Session, *, judge_id: int, now: datetime | None = None
) -> JudgeLease | None:
    """A task for the judge, or None when it is paused or nothing is eligible: an open task it
    has not ranked, skipped or leased, within its share (drawn per task), and with overlap
    'unreached' one no person has ranked or holds."""
    now = now or utcnow()
    judge = get_judge(session, judge_id)
    if judge.state != "active":
        return None
    project = require_project(session, judge.project_id)
    assignment = annotation.lease_for_model(
        session,
        project=project,
        user_id=judge.user_id,
        judge_id=judge.id,
        share=judge.share,
        unreached_only=judge.overlap == "unreached",
        now=now,
    )
    if assignment is None:
        return None
    rows = queue.task_view_rows(session, assignment.task_id)
    _, prompt_text, messages = rows[0][:3]
    texts = {int(sample_id): str(text) for *_, sample_id, text in rows}
    order = annotation.display_order(assignment.task_id, judge.user_id, list(texts))
    return JudgeLease(
        assignment_id=assignment.id,
        task_id=assignment.task_id,
        prompt=str(prompt_text) if prompt_text or not messages else flatten_conversation(messages),
        guidelines=project.guidelines,
        samples=[(sample_id, texts[sample_id]) for sample_id in order],
        position_check=position_check_draw(
            judge_id=judge.id, task_id=assignment.task_id, share=judge.position_check_share
        ),
    )


def record_judgement(
    session: Session,
    *,
    judge_id: int,
    task_id: int,
    groups: list[list[int]],
    harmful: dict[int, str],
    elapsed_ms: int,
    attempts: int,
) -> int:
    """The judge's ranking (marked AI, with its prompt version) and a 'ranked' log row;
    returns the ranking id. Harm becomes a suggested flag for people, never a final one."""
    judge = get_judge(session, judge_id)
    if repository.judge_ranking(session, task_id=task_id, user_id=judge.user_id) is not None:
        # a lease that ran out was taken again by another of the judge's workers
        raise annotation.AlreadySubmitted(f"Judge {judge_id} already ranked task {task_id}")
    now = utcnow()
    ranking_id = annotation.store_model_ranking(
        session,
        task_id=task_id,
        user_id=judge.user_id,
        judge_id=judge.id,
        prompt_version=judge.prompt_version,
        groups=groups,
        harmful=harmful if judge.flag_harm else {},
        elapsed_ms=elapsed_ms,
        now=now,
    )
    repository.add_log(
        session,
        JudgeTaskLog(
            judge_id=judge.id,
            task_id=task_id,
            outcome="ranked",
            attempts=attempts,
            elapsed_ms=elapsed_ms,
            created_at=now,
        ),
    )
    return ranking_id


def record_skip(
    session: Session, *, judge_id: int, task_id: int, reason: str, attempts: int
) -> None:
    """The judge could not rank the task (the reason is stored); it will not lease it again."""
    judge = get_judge(session, judge_id)
    now = utcnow()
    annotation.skip_for_model(session, task_id=task_id, user_id=judge.user_id, now=now)
    repository.add_log(
        session,
        JudgeTaskLog(
            judge_id=judge.id,
            task_id=task_id,
            outcome="skipped",
            attempts=attempts,
            reason=(reason.strip() or "skipped")[:1000],
            created_at=now,
        ),
    )


def pair_relations(groups: list[list[int]]) -> dict[tuple[int, int], int]:
    """(a, b) with a < b -> 1 if a ranks above b, -1 below, 0 tied."""
    place = {sample_id: i for i, group in enumerate(groups) for sample_id in group}
    relations = {}
    for a, b in combinations(sorted(place), 2):
        relations[(a, b)] = (place[a] < place[b]) - (place[a] > place[b])
    return relations


def flipped_pairs(first: list[list[int]], second: list[list[int]]) -> tuple[int, int]:
    """(pairs whose verdict differs, pairs both orderings rank) between two rankings."""
    a, b = pair_relations(first), pair_relations(second)
    shared = a.keys() & b.keys()
    return sum(a[pair] != b[pair] for pair in shared), len(shared)


def record_position_check(
    session: Session, *, judge_id: int, task_id: int, reversed_groups: list[list[int]]
) -> None:
    """The judge's verdict with the samples reversed, against its stored ranking: how many of
    the pairs flipped (position bias)."""
    judge = get_judge(session, judge_id)
    ranking = repository.judge_ranking(session, task_id=task_id, user_id=judge.user_id)
    if ranking is None:
        raise Conflict(f"Judge {judge_id} has no ranking of task {task_id} to check against")
    stored = [list(group) for group in ranking.groups]
    if sorted(s for g in reversed_groups for s in g) != sorted(s for g in stored for s in g):
        raise InvalidInput(
            "The reversed ranking must rank the same samples", details={"field": "groups"}
        )
    flipped, total = flipped_pairs(stored, reversed_groups)
    repository.add_log(
        session,
        JudgeTaskLog(
            judge_id=judge.id,
            task_id=task_id,
            outcome="position_check",
            flipped_pairs=flipped,
            total_pairs=total,
            created_at=utcnow(),
        ),
    )


# Progress


@dataclass
class JudgeProgress:
    judge_id: int
    name: str
    state: str
    paused_reason: str | None
    ranked: int
    skipped: int
    remaining: int
    """Tasks it could still lease now."""
    last_skip_reason: str | None


def judge_progress(session: Session, *, project_id: int) -> list[JudgeProgress]:
    judges = repository.list_judges(session, project_id=project_id)
    counts = repository.outcome_counts(session, judge_ids=[judge.id for judge in judges])
    now = utcnow()
    result = []
    for judge in judges:
        result.append(
            JudgeProgress(
                judge_id=judge.id,
                name=judge.name,
                state=judge.state,
                paused_reason=judge.paused_reason,
                ranked=counts.get((judge.id, "ranked"), 0),
                skipped=counts.get((judge.id, "skipped"), 0),
                remaining=queue.count_judge_candidates(
                    session,
                    project_id=project_id,
                    user_id=judge.user_id,
                    judge_id=judge.id,
                    share=judge.share,
                    unreached_only=judge.overlap == "unreached",
                    now=now,
                ),
                last_skip_reason=repository.last_skip_reason(session, judge_id=judge.id),
            )
        )
    return result


# Pages

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: dict[str, Any]) -> M:
    """A form's fields through the API's own schema: a bad one is a 422 naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "form",
                "message": err["msg"].removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        first = details[0]
        raise InvalidInput(f"{first['field']}: {first['message']}", details=details) from None


def _form_data(form: Any, *, editing: bool) -> dict[str, Any]:
    try:
        return form_fields(form, editing=editing)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"field": "options"}) from None


def create_from_form(
    session: Session, *, project_id: int, form: Any, created_by_id: int | None
) -> Judge:
    data = validated(JudgeCreate, _form_data(form, editing=False))
    return create_judge(session, project_id=project_id, data=data, created_by_id=created_by_id)


def update_from_form(session: Session, *, project_id: int, judge_id: int, form: Any) -> Judge:
    judge = project_judge(session, project_id=project_id, judge_id=judge_id)
    data = validated(JudgeUpdate, _form_data(form, editing=True))
    return update_judge(session, judge_id=judge.id, data=data)


def project_judge(session: Session, *, project_id: int, judge_id: int) -> Judge:
    """The judge, if it belongs to the project in the page's path; else 404."""
    judge = get_judge(session, judge_id)
    if judge.project_id != project_id:
        raise NotFound(f"No judge {judge_id} in project {project_id}")
    return judge


@dataclass
class JudgeRow:
    judge: Judge
    progress: JudgeProgress


@dataclass
class JudgesPage:
    project: Project
    rows: list[JudgeRow]
    editing: Judge | None
    default_template: str
    measures: dict[int, Any] = field(default_factory=dict)
    """Judge id -> its measures (app/judges/measurement.py), shown per judge."""


def judges_page(session: Session, *, project_id: int, edit_id: int | None = None) -> JudgesPage:
    project = require_project(session, project_id)
    judges = repository.list_judges(session, project_id=project.id)
    progress = {p.judge_id: p for p in judge_progress(session, project_id=project.id)}
    editing = None
    if edit_id is not None:
        editing = project_judge(session, project_id=project.id, judge_id=edit_id)
    return JudgesPage(
        project=project,
        rows=[JudgeRow(judge, progress[judge.id]) for judge in judges],
        editing=editing,
        default_template=DEFAULT_JUDGE_TEMPLATE,
        measures=dict(measures_for_project(session, project.id)) if judges else {},
    )
