"""Project rules: settings within bounds, membership, prompts deduplicated by content."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from app.accounts import repository as accounts_repository
from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.models import (
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Project,
    ProjectMember,
    Prompt,
    RankingTask,
    TaskStatus,
)
from app.projects import generation, repository
from app.projects.prompt_import import PromptContent


def create_project(session: Session, *, name: str, base_model: str, **settings: Any) -> Project:
    """A project starts with policy version 1: its base model, as it is."""
    name = _clean_name(session, name)
    base_model = (base_model or "").strip()
    if not base_model or len(base_model) > 500:
        raise InvalidInput(
            "Base model must be a hub id, a local directory or 'tiny' (at most 500 characters)",
            details={"field": "base_model"},
        )
    project = Project(name=name, base_model=base_model)
    apply_settings(project, settings)
    session.add(project)
    session.flush()
    session.add(
        PolicyVersion(
            project_id=project.id,
            number=1,
            name="base",
            kind=PolicyKind.base,
            status=PolicyStatus.current,
            base_model=project.base_model,
        )
    )
    session.flush()
    return project


def update_project(
    session: Session, *, project_id: int, name: str | None = None, **settings: Any
) -> Project:
    """Rename and change settings; the base model is fixed once a project exists."""
    project = require_project(session, project_id)
    clean_name = _clean_name(session, name, project=project) if name is not None else None
    max_new_tokens = project.max_new_tokens
    apply_settings(project, settings)
    if clean_name is not None:
        project.name = clean_name
    if project.max_new_tokens != max_new_tokens:
        _remark_too_long(session, project)
    session.flush()
    return project


def _remark_too_long(session: Session, project: Project) -> None:
    """Max new tokens changed, so the room left for a prompt did: mark the measured prompts
    again when the model's context is known here, else clear the marks (the sampling worker
    measures again)."""
    from app.projects.prompt_length import context_of

    context = context_of(project)
    if context is None:
        repository.clear_too_long(session, project.id)
    else:
        repository.mark_too_long(session, project.id, budget=context - project.max_new_tokens)


def _clean_name(session: Session, name: str | None, *, project: Project | None = None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise InvalidInput("A project needs a name of 1–128 characters", details={"field": "name"})
    other = repository.get_project_by_name(session, name)
    if other is not None and other is not project:
        raise Conflict(f"Project {name!r} already exists", details={"field": "name"})
    return name


_BOUNDS: dict[str, tuple[type, float | None, float | None]] = {
    "samples_per_prompt": (int, 4, 9),
    "annotations_per_task": (int, 1, 50),
    "lease_minutes": (int, 1, 24 * 60),
    "temperature": (float, 0.01, 5.0),
    "top_p": (float, 0.01, 1.0),
    "max_new_tokens": (int, 1, 8192),
    "newest_version_share": (float, 0.0, 1.0),
    "min_open_tasks": (int, 0, 100000),
    "guidelines": (str, None, 50_000),
    "description": (str, None, 5_000),
    "trust_remote_code": (bool, None, None),
    "stop_strings": (list, None, None),
    "long_prompts": (str, None, None),
    "reliability_weighting": (bool, None, None),
    "reliability_min_tasks": (int, 0, 10_000),
    "gold_rate": (float, 0.0, 0.5),
    "selection": (str, None, None),
    "uniform_share": (float, 0.0, 1.0),
    "position_correction": (bool, None, None),
    "generation_backend": (str, None, None),
    "generation_base_url": (str, None, 500),
    "generation_model": (str, None, 200),
    "generation_api_key_env": (str, None, 128),
    "judge_suggestions": (bool, None, None),
    "suggestion_control_share": (float, 0.0, 1.0),
    "judge_weight": (float, 0.0, 10.0),
    "judge_only": (bool, None, None),
    "judges_in_human_figures": (bool, None, None),
}
LONG_PROMPTS = {
    "truncate": "Truncate: keep the end, cut the start (marked …)",
    "skip": "Skip: mark the prompt too long and never sample it",
}
"""The `long_prompts` setting's choices, for a prompt longer than the model's context less
max new tokens."""
SELECTION = {
    "uniform": "Uniform: every prompt and version pair alike",
    "active": "Active: where a ranking is worth most (reward-model uncertainty, undecided "
    "versions), keeping the uniform share",
}
"""The `selection` setting's choices: how new tasks pick prompts and versions."""
_CHOICES = {
    "long_prompts": LONG_PROMPTS,
    "selection": SELECTION,
    "generation_backend": generation.BACKENDS,
}
SETTING_LABELS = {
    "samples_per_prompt": "Samples per prompt",
    "annotations_per_task": "Annotations per task",
    "lease_minutes": "Lease time (minutes)",
    "temperature": "Temperature",
    "top_p": "Top-p",
    "max_new_tokens": "Max new tokens",
    "newest_version_share": "Newest version share",
    "min_open_tasks": "Minimum open tasks",
    "guidelines": "Guidelines",
    "description": "Description",
    "trust_remote_code": "Trust remote code",
    "stop_strings": "Stop strings",
    "long_prompts": "Long prompts",
    "reliability_weighting": "Weight by annotator reliability",
    "reliability_min_tasks": "Shared tasks before weighting",
    "gold_rate": "Gold task rate",
    "selection": "Task selection",
    "uniform_share": "Uniform share",
    "position_correction": "Correct position bias",
    "generation_backend": "Generation backend",
    "generation_base_url": "Generation server URL",
    "generation_model": "Generation model",
    "generation_api_key_env": "Generation key variable",
    "judge_suggestions": "Show judge suggestions",
    "suggestion_control_share": "Share shown without the suggestion",
    "judge_weight": "Judge rankings' training weight",
    "judge_only": "Train on judge rankings only",
    "judges_in_human_figures": "Count judges in human figures",
}
_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_TRUE, _FALSE = {"true", "on", "1", "yes"}, {"false", "off", "0", "no", ""}


def apply_settings(project: Project, settings: dict[str, Any]) -> None:
    """Validate every field before changing any, so a bad value changes nothing."""
    clean: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in _BOUNDS:
            raise InvalidInput(f"Unknown project setting {key!r}", details={"field": key})
        if key == "stop_strings":
            clean[key] = parse_stop_strings(value)
            continue
        if key in generation.TEXT_SETTINGS:
            clean[key] = generation.clean_text(key, value)
            continue
        if key in _CHOICES:
            choice = value.strip().lower() if isinstance(value, str) else value
            if choice not in _CHOICES[key]:
                raise InvalidInput(
                    f"{SETTING_LABELS[key]} must be one of: {', '.join(_CHOICES[key])}",
                    details={"field": key},
                )
            clean[key] = choice
            continue
        kind, low, high = _BOUNDS[key]
        label = SETTING_LABELS[key]
        try:
            value = _convert(kind, value)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"{label} must be {_KIND_NAMES[kind]}", details={"field": key}
            ) from exc
        if kind is str and high is not None and len(value) > high:
            raise InvalidInput(
                f"{label} must be at most {int(high)} characters", details={"field": key}
            )
        if kind in (int, float) and not (low <= value <= high):  # type: ignore[operator]
            raise InvalidInput(f"{label} must be between {low} and {high}", details={"field": key})
        clean[key] = value
    generation.check_backend(
        clean.get("generation_backend", project.generation_backend),
        clean.get("generation_base_url", project.generation_base_url),
    )
    for key, value in clean.items():
        setattr(project, key, value)


def _convert(kind: type, value: Any) -> Any:
    """Form text or JSON values to the setting's type; bool("off") would be True, so not that."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value.strip()
    if isinstance(value, bool):
        raise TypeError(value)
    return kind(value.strip() if isinstance(value, str) else value)


MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 100
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def parse_stop_strings(value: Any) -> list[str] | None:
    """The stop-strings setting from the form's text or a JSON list.

    Text holds one per line, with \\n for a line break ("\\nUser:" stops at a line that starts
    with "User:"); blank lines and the spaces around a line are ignored, and no text at all
    means None: derive them from the chat template. A list is taken as it is; [] leaves only
    the end-of-text token (and the template's end-of-turn token).
    """
    if value is None:
        return None
    if isinstance(value, str):
        lines = [line.strip() for line in value.splitlines()]
        stops = [re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m[1]], line) for line in lines if line]
        if not stops:
            return None
    elif isinstance(value, list) and all(isinstance(s, str) for s in value):
        stops = list(value)
    else:
        raise _stop_strings_error("Stop strings must be text, one per line")
    if not all(stops):
        raise _stop_strings_error("A stop string must not be empty")
    if len(stops) > MAX_STOP_STRINGS:
        raise _stop_strings_error(f"At most {MAX_STOP_STRINGS} stop strings (got {len(stops)})")
    for stop in stops:
        if len(stop) > MAX_STOP_STRING_CHARS:
            raise _stop_strings_error(
                f"Each stop string must be at most {MAX_STOP_STRING_CHARS} characters "
                f"({stop[:20]!r}… has {len(stop)})"
            )
    return list(dict.fromkeys(stops))  # the first of repeated lines


def _stop_strings_error(message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": "stop_strings"})


def stop_strings_text(stops: list[str] | None) -> str:
    """The setting as the form shows it: one per line, line breaks written \\n."""
    if stops is None:
        return ""
    escaped = (s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for s in stops)
    return "\n".join(escaped)


def require_project(session: Session, project_id: int) -> Project:
    project = repository.get_project(session, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}")
    return project


def add_member(session: Session, *, project_id: int, user_id: int) -> ProjectMember:
    """Let a user work on a project (idempotent)."""
    return _add_member(session, project_id=project_id, user_id=user_id)[0]


def add_member_named(session: Session, *, project_id: int, username: str) -> bool:
    """Add by username (the page cannot list thousands of users); False if already a member."""
    require_project(session, project_id)  # an unknown project is a 404 whatever the name
    username = username.strip()
    if not username:
        raise InvalidInput("Enter the username of the user to add", details={"field": "username"})
    user = accounts_repository.get_user_by_username(session, username)
    if user is None:
        raise InvalidInput(
            f"No user is named {username!r}; usernames are matched exactly, case included "
            "(the users page finds them by part of the name)",
            details={"field": "username"},
        )
    return _add_member(session, project_id=project_id, user_id=user.id)[1]


def _add_member(session: Session, *, project_id: int, user_id: int) -> tuple[ProjectMember, bool]:
    require_project(session, project_id)
    user = accounts_repository.get_user(session, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}")
    if not user.active:
        raise InvalidInput(
            f"{user.username} is deactivated; reactivate the account first",
            details={"field": "username"},
        )
    member = repository.get_member(session, project_id, user_id)
    if member is not None:
        return member, False
    member = ProjectMember(project_id=project_id, user_id=user_id)
    session.add(member)
    session.flush()
    return member, True


def remove_member(session: Session, *, project_id: int, user_id: int) -> None:
    """Stop a user getting new tasks here; their rankings and open leases stay as they are.

    An exclusion lives apart from the membership (AnnotatorExclusion), so an excluded member
    can be removed and their rankings stay out of ratings and training.
    """
    require_project(session, project_id)
    member = repository.get_member(session, project_id, user_id)
    if member is None:
        raise NotFound(f"User {user_id} is not a member of this project")
    repository.delete_member(session, project_id, user_id)


def prompt_hash(content: PromptContent) -> str:
    """Whitespace-normalised content hash: the same prompt imported twice is one prompt."""
    if isinstance(content, str):
        canonical = " ".join(content.split())
    else:
        canonical = json.dumps(
            [[m["role"], " ".join(m["content"].split())] for m in content], ensure_ascii=False
        )
    return hashlib.sha256(canonical.encode()).hexdigest()


def flatten_conversation(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


class Deduplicated:
    """What an import skipped, counted apart."""

    in_project: int
    """Skipped: the project had them already."""
    repeated: int
    """Skipped: a copy of an earlier record of the same input."""

    @property
    def duplicates(self) -> int:
        return self.in_project + self.repeated


@dataclass(frozen=True)
class AddedPrompts(Deduplicated):
    added: list[Prompt]
    in_project: int = 0
    """Skipped: the project had them already."""
    repeated: int = 0
    """Skipped: an earlier record of the same input had the same prompt."""
    too_long: list[Prompt] = field(default_factory=list)
    """Added prompts longer than the model's context less max new tokens (measured)."""
    budget: int | None = None
    """Tokens a prompt may take (None: the tokenizer could not be read, nothing measured)."""

    @classmethod
    def combined(cls, parts: Sequence[AddedPrompts]) -> AddedPrompts:
        """One report for prompts added in several calls (the last known budget)."""
        budgets = [part.budget for part in parts if part.budget is not None]
        return cls(
            added=[prompt for part in parts for prompt in part.added],
            in_project=sum(part.in_project for part in parts),
            repeated=sum(part.repeated for part in parts),
            too_long=[prompt for part in parts for prompt in part.too_long],
            budget=budgets[-1] if budgets else None,
        )


def add_prompts(
    session: Session,
    *,
    project_id: int,
    contents: Sequence[PromptContent],
    source: str = "plain",
    token_counts: Sequence[int | None] | None = None,
    measure: bool = True,
) -> AddedPrompts:
    """Insert new prompts; ones already in the project (or repeated in the input) are skipped.

    The new prompts are measured in the project's tokenizer (`prompt_length`) unless
    `token_counts` (one per content, measured by a preview) are given or `measure` is off;
    those too long for the model are marked and returned.
    """
    hashes = [prompt_hash(c) for c in contents]
    existing = repository.existing_prompt_hashes(session, project_id, hashes)
    seen = set(existing)
    in_project = repeated = 0
    added: list[Prompt] = []
    new_contents: list[PromptContent] = []
    new_counts: list[int | None] = []
    for index, (content, digest) in enumerate(zip(contents, hashes, strict=True)):
        if digest in existing:
            in_project += 1
            continue
        if digest in seen:
            repeated += 1
            continue
        seen.add(digest)
        new_contents.append(content)
        if token_counts is not None:
            new_counts.append(token_counts[index])
        if isinstance(content, str):
            prompt = Prompt(project_id=project_id, content_hash=digest, text=content, source=source)
        else:
            prompt = Prompt(
                project_id=project_id,
                content_hash=digest,
                text=flatten_conversation(content),
                messages=list(content),
                source=source,
            )
        session.add(prompt)
        added.append(prompt)
    counts = new_counts if token_counts is not None else None
    too_long, budget = _measure_added(session, project_id, added, new_contents, counts, measure)
    session.flush()
    return AddedPrompts(
        added=added, in_project=in_project, repeated=repeated, too_long=too_long, budget=budget
    )


def add_sourced_prompts(
    session: Session,
    *,
    project_id: int,
    contents: Sequence[PromptContent],
    sources: Sequence[str],
    token_counts: Sequence[int | None] | None = None,
) -> AddedPrompts:
    """`add_prompts` for prompts from several formats, each stored with its own as source
    (`sources` and `token_counts` hold one per content)."""
    by_source: dict[str, list[int]] = {}
    for index, source in enumerate(sources):
        by_source.setdefault(source, []).append(index)
    return AddedPrompts.combined(
        [
            add_prompts(
                session,
                project_id=project_id,
                contents=[contents[i] for i in indices],
                source=source,
                token_counts=None if token_counts is None else [token_counts[i] for i in indices],
            )
            for source, indices in by_source.items()
        ]
    )


def _measure_added(
    session: Session,
    project_id: int,
    added: list[Prompt],
    contents: list[PromptContent],
    counts: list[int | None] | None,
    measure: bool,
) -> tuple[list[Prompt], int | None]:
    """Store the new prompts' token counts and too-long marks; (too long, budget)."""
    from app.projects.prompt_length import Measurement, context_of
    from app.projects.prompt_length import measure as measure_prompts

    if not added or not (measure or counts is not None):
        return [], None
    project = require_project(session, project_id)
    measured: Measurement | None
    if counts is not None:
        context = context_of(project)
        budget = context - project.max_new_tokens if context is not None else None
        measured = Measurement(counts=list(counts), context=context, budget=budget)
    else:
        measured = measure_prompts(project, contents)
    if measured is None:
        return [], None
    too_long = []
    for index, prompt in enumerate(added):
        prompt.token_count = measured.counts[index]
        prompt.too_long = measured.too_long(index)
        if prompt.too_long:
            too_long.append(prompt)
    return too_long, measured.budget


# Progress


@dataclass(frozen=True)
class ProjectProgress:
    prompts: int
    prompts_too_long: int
    """Active prompts longer than the model's context less max new tokens (as last measured):
    shortened (oldest turns first, then the start) or skipped, as `long_prompts` says."""
    tasks_open: int
    tasks_leased: int
    """Open tasks that someone holds a lease on right now (a task needing several annotations
    can be leased and still be handed out)."""
    live_leases: int
    tasks_complete: int
    tasks_cancelled: int
    annotations_done: int
    annotations_required: int
    rankings_by_annotator: list[Row[Any]]
    samples_by_version: list[Row[Any]]


def progress(session: Session, *, project_id: int) -> ProjectProgress:
    require_project(session, project_id)
    tasks = repository.task_counts(session, project_id)
    leased, leases = repository.live_lease_counts(session, project_id, utcnow())
    done, required = repository.annotation_totals(session, project_id)
    return ProjectProgress(
        prompts=repository.count_prompts(session, project_id),
        prompts_too_long=repository.count_too_long_prompts(session, project_id),
        tasks_open=tasks.get(TaskStatus.open, 0),
        tasks_leased=leased,
        live_leases=leases,
        tasks_complete=tasks.get(TaskStatus.complete, 0),
        tasks_cancelled=tasks.get(TaskStatus.cancelled, 0),
        annotations_done=done,
        annotations_required=required,
        rankings_by_annotator=repository.rankings_per_annotator(session, project_id),
        samples_by_version=repository.samples_per_version(session, project_id),
    )


@dataclass(frozen=True)
class ProjectSummary:
    project: Project
    prompts: int
    open_tasks: int
    complete_tasks: int
    members: int


def project_summaries(session: Session) -> list[ProjectSummary]:
    """Every project with its headline counts, in four queries whatever the number of projects."""
    prompts = repository.count_per_project(session, Prompt.project_id)
    open_tasks = repository.count_per_project(
        session, RankingTask.project_id, RankingTask.status == TaskStatus.open
    )
    complete = repository.count_per_project(
        session, RankingTask.project_id, RankingTask.status == TaskStatus.complete
    )
    members = repository.count_per_project(session, ProjectMember.project_id)
    return [
        ProjectSummary(
            project=p,
            prompts=prompts.get(p.id, 0),
            open_tasks=open_tasks.get(p.id, 0),
            complete_tasks=complete.get(p.id, 0),
            members=members.get(p.id, 0),
        )
        for p in repository.list_projects(session)
    ]
