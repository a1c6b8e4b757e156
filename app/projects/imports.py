"""Prompt import in two steps: preview (parse, count, stage) and confirm (insert, one transaction).

Between the two, the parsed prompts wait in a JSON file under <data_dir>/uploads named by a
random token, bound to the project and the admin who uploaded it. That keeps a 100 MB upload
out of the page and out of the session, and lets the confirm insert exactly what was previewed.
Several web servers need a shared data directory (or sticky sessions) for this to work.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db import after_commit
from app.errors import InvalidInput, NotFound
from app.models import Prompt
from app.projects import prompt_length, repository
from app.projects.prompt_import import LineError, ParsedPrompt, ParseResult, parse_prompts
from app.projects.service import AddedPrompts, add_prompts, prompt_hash, require_project

PREVIEW_PROMPTS = 20
PREVIEW_ERRORS = 200
STAGED_TTL_SECONDS = 6 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


@dataclass(frozen=True)
class PreviewRow:
    prompt: ParsedPrompt
    status: str  # "new", "in project" or "repeated in file"


@dataclass(frozen=True)
class LongPrompt:
    """A prompt longer than the model's context less the project's max new tokens."""

    line: int
    tokens: int


@dataclass(frozen=True)
class LongPrompts:
    """The too-long prompts of an import, named in its preview and its confirmation."""

    count: int
    first: list[LongPrompt]
    """The first prompt_length.MAX_NAMED of them, by line."""
    budget: int
    """Tokens a prompt may take: the model's context less max new tokens."""


@dataclass(frozen=True)
class ImportPreview:
    token: str | None
    """Pass to confirm_import; None when nothing in the file can be imported."""
    filename: str
    parsed: ParseResult
    new: int
    in_project: int
    repeated: int
    rows: list[PreviewRow]
    errors: list[LineError]
    """The first PREVIEW_ERRORS errors; parsed.errors has them all."""
    measured: bool = False
    """The prompts were measured in the project's tokenizer (else the sampling worker does)."""
    too_long: LongPrompts | None = None
    """New prompts too long for the model (None when there are none, or nothing measured)."""


@dataclass(frozen=True)
class ImportOutcome:
    filename: str
    added: int
    in_project: int
    """Skipped: the project had them already (some may have arrived since the preview)."""
    repeated: int
    """Skipped: a copy of an earlier record of the file."""
    errors: int
    too_long: LongPrompts | None = None

    @property
    def duplicates(self) -> int:
        return self.in_project + self.repeated


def preview_import(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    data: bytes,
    filename: str,
    fmt: str | None,
    staging_dir: Path,
) -> ImportPreview:
    """Parse an upload, count what is new against the project, and stage it for confirm."""
    require_project(session, project_id)
    if not data.strip():
        raise InvalidInput("The file is empty", details={"field": "file"})
    parsed = parse_prompts(data, filename, fmt)
    hashes = [prompt_hash(p.content) for p in parsed.prompts]
    existing = repository.existing_prompt_hashes(session, project_id, hashes)
    statuses = import_statuses(hashes, existing)
    new = statuses.count("new")
    project = require_project(session, project_id)
    fresh = [i for i, status in enumerate(statuses) if status == "new"]
    measured = prompt_length.measure(project, [parsed.prompts[i].content for i in fresh])
    counts: list[int | None] = [None] * len(parsed.prompts)
    too_long = None
    if measured is not None:
        for i, count in zip(fresh, measured.counts, strict=True):
            counts[i] = count
        too_long = _long_prompts(
            [
                LongPrompt(parsed.prompts[i].line, count)
                for j, (i, count) in enumerate(zip(fresh, measured.counts, strict=True))
                if count is not None and measured.too_long(j)
            ],
            measured.budget,
        )
    token = None
    if new:
        token = stage_upload(
            staging_dir,
            {
                "project_id": project_id,
                "user_id": user_id,
                "filename": filename,
                "errors": len(parsed.errors),
                "prompts": [asdict(p) for p in parsed.prompts],
                "token_counts": counts if measured is not None else None,
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
            PreviewRow(p, s)
            for p, s in zip(parsed.prompts[:PREVIEW_PROMPTS], statuses, strict=False)
        ],
        errors=parsed.errors[:PREVIEW_ERRORS],
        measured=measured is not None,
        too_long=too_long,
    )


def _long_prompts(found: Sequence[LongPrompt], budget: int | None) -> LongPrompts | None:
    if not found or budget is None:
        return None
    first = list(found[: prompt_length.MAX_NAMED])
    return LongPrompts(count=len(found), first=first, budget=budget)


def confirm_import(
    session: Session, *, project_id: int, user_id: int, token: str, staging_dir: Path
) -> ImportOutcome:
    """Insert the previewed prompts; prompts that arrived in between are skipped as duplicates."""
    staged = load_staged(staging_dir, token, project_id=project_id, user_id=user_id)
    prompts = [ParsedPrompt(**p) for p in staged["prompts"]]
    added = import_prompts(
        session, project_id=project_id, prompts=prompts, token_counts=staged.get("token_counts")
    )
    after_commit(session, lambda: discard_staged(staging_dir, token))
    return ImportOutcome(
        filename=staged["filename"],
        added=len(added.added),
        in_project=added.in_project,
        repeated=added.repeated,
        errors=staged["errors"],
        too_long=too_long_of(added, prompts),
    )


def too_long_of(added: AddedPrompts, prompts: Sequence[ParsedPrompt]) -> LongPrompts | None:
    """The added prompts marked too long, with the line each came from."""
    if not added.too_long or added.budget is None:
        return None
    lines = {prompt_hash(p.content): p.line for p in prompts}
    found = sorted(
        (LongPrompt(lines.get(p.content_hash, 0), p.token_count or 0) for p in added.too_long),
        key=lambda long: long.line,
    )
    return _long_prompts(found, added.budget)


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
    by_source: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_source.setdefault(prompt.source, []).append(index)
    added: list[Prompt] = []
    too_long: list[Prompt] = []
    in_project = repeated = 0
    budget: int | None = None
    for source, indices in by_source.items():
        result = add_prompts(
            session,
            project_id=project_id,
            contents=[prompts[i].content for i in indices],
            source=source,
            token_counts=[token_counts[i] for i in indices] if token_counts is not None else None,
        )
        added.extend(result.added)
        too_long.extend(result.too_long)
        in_project += result.in_project
        repeated += result.repeated
        budget = result.budget if result.budget is not None else budget
    return AddedPrompts(
        added=added,
        duplicates=in_project + repeated,
        in_project=in_project,
        repeated=repeated,
        too_long=too_long,
        budget=budget,
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


def load_staged(folder: Path, token: str, *, project_id: int, user_id: int) -> dict[str, Any]:
    expired = NotFound("This preview has expired or was already imported; upload the file again")
    if not _TOKEN.match(token):
        raise expired
    path = folder / f"{token}.json"
    try:
        if time.time() - path.stat().st_mtime > STAGED_TTL_SECONDS:
            raise expired
        payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise expired from None
    if payload.get("project_id") != project_id or payload.get("user_id") != user_id:
        raise expired
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
