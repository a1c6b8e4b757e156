"""Imports in two steps, one pipeline for prompts and demonstrations: preview (parse, count
what is new against the project, stage) and confirm (insert what was previewed, one transaction).

An `ImportKind` brings what differs: its record parser, the hash that deduplicates its items,
what its preview tells besides the counts, and how the staged items are added. Between the two
steps the parsed items wait in a JSON file under <data_dir>/uploads named by a random token,
bound to the project and the admin who uploaded it. That keeps a 100 MB upload out of the page
and out of the session, and lets the confirm insert exactly what was previewed. Several web
servers need a shared data directory (or sticky sessions) for this to work.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from sqlalchemy.orm import Session

from app.db import after_commit
from app.errors import InvalidInput, NotFound
from app.models import Project
from app.projects import prompt_length, repository
from app.projects.demonstration_store import add_answers, new_answers
from app.projects.prompt_import import (
    FORMAT_LABELS,
    FORMATS,
    LineError,
    Oasst2Options,
    Parsed,
    ParsedPrompt,
    PromptContent,
    parse_prompts,
)
from app.projects.service import (
    AddedPrompts,
    Deduplicated,
    add_sourced_prompts,
    prompt_hash,
    require_project,
)

PREVIEW_ROWS = 20
PREVIEW_ERRORS = 200
STAGED_TTL_SECONDS = 6 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Item = TypeVar("Item", bound="DataclassInstance")
"""A parsed record (ParsedPrompt, ParsedDemonstration): staged as its fields."""


@dataclass(frozen=True)
class PreviewRow:
    """One item of a preview's first rows."""

    line: int
    prompt: PromptContent
    response: str | None
    """The answer, for a demonstration (None for a prompt)."""
    status: str  # "new", "in project" or "repeated in file"


class LongPrompt(NamedTuple):
    """A prompt longer than the model's context less the project's max new tokens."""

    line: int
    """Line of the file where it starts."""
    tokens: int
    """Its length in the project's tokenizer, chat template included."""


@dataclass(frozen=True)
class LongPrompts:
    """The too-long prompts of an import, named in its preview and its confirmation."""

    count: int
    first: list[LongPrompt]
    """The first prompt_length.MAX_NAMED of them, by line."""
    budget: int
    """Tokens a prompt may take: the model's context less max new tokens."""

    @classmethod
    def of(cls, found: Sequence[LongPrompt], budget: int | None) -> LongPrompts | None:
        """The report on `found`; None when there is nothing to report."""
        if not found or budget is None:
            return None
        return cls(count=len(found), first=list(found[: prompt_length.MAX_NAMED]), budget=budget)


@dataclass(frozen=True)
class Findings:
    """What a kind's preview tells besides the counts, and keeps for its confirm."""

    staged: dict[str, Any] = field(default_factory=dict)
    """Added to the staged file."""
    measured: bool = False
    too_long: LongPrompts | None = None
    new_prompts: int | None = None


@dataclass(frozen=True)
class ImportPreview:
    token: str | None
    """Pass to the kind's confirm; None when nothing in the file can be imported."""
    filename: str
    parsed: Parsed[Any]
    new: int
    in_project: int
    repeated: int
    rows: list[PreviewRow]
    """The first PREVIEW_ROWS items with their status."""
    errors: list[LineError]
    """The first PREVIEW_ERRORS errors; parsed.errors has them all."""
    measured: bool = False
    """Prompts: measured in the project's tokenizer (else the sampling worker does)."""
    too_long: LongPrompts | None = None
    """Prompts: new ones too long for the model (None when there are none, or nothing measured)."""
    new_prompts: int | None = None
    """Demonstrations: prompts the new ones will create (the others are in the project already)."""
    new_demonstrations: int | None = None
    """Prompts kept with their answers: the demonstrations the confirm adds (None: not asked)."""


@dataclass(frozen=True)
class ImportOutcome(Deduplicated):
    filename: str
    added: int
    in_project: int
    """Skipped: the project had them already (some may have arrived since the preview)."""
    repeated: int
    """Skipped: a copy of an earlier record of the file."""
    errors: int
    prompts_added: int | None = None
    """Demonstrations: prompts created for them."""
    too_long: LongPrompts | None = None
    """Prompts: the added ones too long for the model."""
    demonstrations_added: int | None = None
    """Prompts kept with their answers: the demonstrations added (None: not asked)."""

    @classmethod
    def of(
        cls,
        staged: dict[str, Any],
        added: Added,
        *,
        prompts_added: int | None = None,
        too_long: LongPrompts | None = None,
        demonstrations_added: int | None = None,
    ) -> ImportOutcome:
        """The outcome of adding what `staged` held."""
        return cls(
            filename=staged["filename"],
            added=len(added.added),
            in_project=added.in_project,
            repeated=added.repeated,
            errors=staged["errors"],
            prompts_added=prompts_added,
            too_long=too_long,
            demonstrations_added=demonstrations_added,
        )


class Added(Protocol):
    """What adding items to a project reports (AddedPrompts, AddedDemonstrations)."""

    @property
    def added(self) -> Sequence[object]: ...

    @property
    def in_project(self) -> int: ...

    @property
    def repeated(self) -> int: ...


@dataclass(frozen=True)
class ImportKind(Generic[Item]):
    """One kind of import (prompts, demonstrations): the parts of the pipeline that differ."""

    name: str
    """The URL segment and the staged file's key for the items: "prompts", "demonstrations"."""
    noun: str
    """One item, as the pages say it: "prompt", "demonstration"."""
    format_labels: dict[str, str]
    parse: Callable[[bytes, str, str | None, Oasst2Options | None], Parsed[Item]]
    """The record parser: (data, filename, forced format or None, OASST2 setting or None)."""
    digest: Callable[[Item], str]
    """The hash that deduplicates an item within its project."""
    existing: Callable[[Session, int, Sequence[str]], set[str]]
    """The digests a project (by id) has already."""
    findings: Callable[[Session, Project, Sequence[Item], Sequence[str]], Findings]
    """What a preview tells besides the counts, from the items and their statuses."""
    row: Callable[[Item, str], PreviewRow]
    add_staged: Callable[[Session, int, dict[str, Any]], ImportOutcome]
    """Add the items of a staged preview (`staged[name]`) to a project (by id)."""
    formats: tuple[str, ...] = FORMATS
    oasst2: Oasst2Options = Oasst2Options()
    """The OASST2 setting an import that names none gets (what the form shows chosen)."""
    new_answers: Callable[[Session, int, Sequence[Item]], int] | None = None
    """Prompts: how many of the items' answers would be new demonstrations of a project (by
    id), for an import that keeps them; None for a kind without that setting."""

    def preview(
        self,
        session: Session,
        *,
        project_id: int,
        user_id: int,
        data: bytes,
        filename: str,
        fmt: str | None,
        staging_dir: Path,
        oasst2: Oasst2Options | None = None,
        demonstrations: bool = False,
    ) -> ImportPreview:
        """Parse an upload, count what is new against the project, and stage it for confirm;
        `demonstrations` keeps the file's answers too, where the kind can (`new_answers`)."""
        project = require_project(session, project_id)
        if not data.strip():
            raise InvalidInput("The file is empty", details={"field": "file"})
        parsed = self.parse(data, filename, fmt, oasst2)
        digests = [self.digest(item) for item in parsed.items]
        statuses = import_statuses(digests, self.existing(session, project_id, digests))
        found = self.findings(session, project, parsed.items, statuses)
        new = statuses.count("new")
        answers = None
        if demonstrations and self.new_answers is not None:
            answers = self.new_answers(session, project_id, parsed.items)
        token = None
        if new or answers:
            token = stage_upload(
                staging_dir,
                {
                    "project_id": project_id,
                    "user_id": user_id,
                    "filename": filename,
                    "errors": len(parsed.errors),
                    self.name: [asdict(item) for item in parsed.items],
                    "keep_answers": answers is not None,
                    **found.staged,
                },
            )
        return ImportPreview(
            token=token,
            filename=filename,
            parsed=parsed,
            new=new,
            in_project=statuses.count("in project"),
            repeated=statuses.count("repeated in file"),
            rows=[
                self.row(item, status)
                for item, status in zip(parsed.items[:PREVIEW_ROWS], statuses, strict=False)
            ],
            errors=parsed.errors[:PREVIEW_ERRORS],
            measured=found.measured,
            too_long=found.too_long,
            new_prompts=found.new_prompts,
            new_demonstrations=answers,
        )

    def confirm(
        self, session: Session, *, project_id: int, user_id: int, token: str, staging_dir: Path
    ) -> ImportOutcome:
        """Insert the previewed items; ones that arrived in between are skipped as duplicates."""
        staged = load_staged(staging_dir, token, project_id=project_id, user_id=user_id)
        if staged.get(self.name) is None:  # a preview of another kind
            raise _expired()
        outcome = self.add_staged(session, project_id, staged)
        after_commit(session, lambda: discard_staged(staging_dir, token))
        return outcome


# Prompts


def _measure_new(
    session: Session, project: Project, prompts: Sequence[ParsedPrompt], statuses: Sequence[str]
) -> Findings:
    """New prompts measured in the project's tokenizer; the counts are staged for the confirm."""
    fresh = [i for i, status in enumerate(statuses) if status == "new"]
    measured = prompt_length.measure(project, [prompts[i].content for i in fresh])
    if measured is None:
        return Findings(staged={"token_counts": None})
    counts: list[int | None] = [None] * len(prompts)
    for i, count in zip(fresh, measured.counts, strict=True):
        counts[i] = count
    too_long = LongPrompts.of(
        [
            LongPrompt(prompts[i].line, count)
            for j, (i, count) in enumerate(zip(fresh, measured.counts, strict=True))
            if count is not None and measured.too_long(j)
        ],
        measured.budget,
    )
    return Findings(staged={"token_counts": counts}, measured=True, too_long=too_long)


def _add_staged(session: Session, project_id: int, staged: dict[str, Any]) -> ImportOutcome:
    prompts = [ParsedPrompt(**p) for p in staged["prompts"]]
    added = import_prompts(
        session, project_id=project_id, prompts=prompts, token_counts=staged.get("token_counts")
    )
    kept = None
    if staged.get("keep_answers"):
        kept = add_answers(session, project_id=project_id, prompts=prompts)
    return ImportOutcome.of(
        staged,
        added,
        too_long=too_long_of(added, prompts),
        demonstrations_added=None if kept is None else len(kept.added),
    )


PROMPTS = ImportKind[ParsedPrompt](
    name="prompts",
    noun="prompt",
    format_labels=FORMAT_LABELS,
    parse=parse_prompts,
    digest=lambda prompt: prompt_hash(prompt.content),
    existing=repository.existing_prompt_hashes,
    findings=_measure_new,
    row=lambda prompt, status: PreviewRow(prompt.line, prompt.content, None, status),
    add_staged=_add_staged,
    new_answers=new_answers,
)
"""New prompts are measured in the project's tokenizer; the too-long ones are named. The file's
answers may come along as demonstrations of the prompts."""


def too_long_of(added: AddedPrompts, prompts: Sequence[ParsedPrompt]) -> LongPrompts | None:
    """The added prompts marked too long, with the line each came from."""
    if not added.too_long or added.budget is None:
        return None
    lines = {prompt_hash(p.content): p.line for p in prompts}
    found = sorted(
        (LongPrompt(lines.get(p.content_hash, 0), p.token_count or 0) for p in added.too_long),
        key=lambda long: long.line,
    )
    return LongPrompts.of(found, added.budget)


def import_prompts(
    session: Session,
    *,
    project_id: int,
    prompts: Sequence[ParsedPrompt],
    token_counts: Sequence[int | None] | None = None,
) -> AddedPrompts:
    """Add parsed prompts to a project, deduplicated, with each one's format as its source,
    measured in the project's tokenizer (or with the `token_counts` a preview measured, one
    per prompt)."""
    if repository.lock_project(session, project_id) is None:
        raise NotFound(f"No project {project_id}")
    if token_counts is not None and len(token_counts) != len(prompts):
        token_counts = None  # a staged file from before counts were staged: measure again
    return add_sourced_prompts(
        session,
        project_id=project_id,
        contents=[p.content for p in prompts],
        sources=[p.source for p in prompts],
        token_counts=token_counts,
    )


# Staging


def import_statuses(digests: Sequence[str], existing: Collection[str]) -> list[str]:
    """Per record: "new", "in project" or "repeated in file" (a later copy of a new record)."""
    seen: set[str] = set()
    statuses: list[str] = []
    for digest in digests:
        if digest in existing:
            statuses.append("in project")
        elif digest in seen:
            statuses.append("repeated in file")
        else:
            statuses.append("new")
        seen.add(digest)
    return statuses


def stage_upload(folder: Path, payload: dict[str, Any]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    _prune(folder)
    token = secrets.token_urlsafe(24)
    path = folder / f"{token}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False)
    return token


def _expired() -> NotFound:
    return NotFound("This preview has expired or was already imported; upload the file again")


def load_staged(folder: Path, token: str, *, project_id: int, user_id: int) -> dict[str, Any]:
    if not _TOKEN.match(token):
        raise _expired()
    path = folder / f"{token}.json"
    try:
        if time.time() - path.stat().st_mtime > STAGED_TTL_SECONDS:
            raise _expired()
        payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _expired() from None
    if payload.get("project_id") != project_id or payload.get("user_id") != user_id:
        raise _expired()
    return payload


def discard_staged(folder: Path, token: str) -> None:
    if _TOKEN.match(token):
        (folder / f"{token}.json").unlink(missing_ok=True)


def _prune(folder: Path) -> None:
    """Drop previews nobody confirmed; they would otherwise pile up in the data directory."""
    cutoff = time.time() - STAGED_TTL_SECONDS
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass
