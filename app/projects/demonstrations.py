"""Demonstrations (prompt → good response, the SFT data): import, preview/confirm, annotators'.

A demonstration is deduplicated per project by a hash of its prompt and its response, so the
same file imported twice, or an annotator writing the answer an import already has, stores it
once. Its prompt is a project prompt: found by the prompt's own content hash, or created (with
the same deduplication as a prompt import), so SFT prompts are also sampled and ranked.

Imports lock the project row first, like prompt imports, so two imports into a project queue.
An annotator's demonstration is written inside a submit with INSERT … ON CONFLICT DO NOTHING
instead: a submit must not lock the project row (every submit of the project would queue).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import after_commit, utcnow
from app.errors import InvalidInput, NotFound
from app.models import Demonstration, Prompt
from app.projects import repository
from app.projects.demonstration_import import (
    DemonstrationParse,
    ParsedDemonstration,
    parse_demonstrations,
)
from app.projects.imports import (
    discard_staged,
    import_statuses,
    load_staged,
    stage_upload,
)
from app.projects.prompt_import import LineError
from app.projects.service import add_prompts, prompt_hash, require_project

PREVIEW_ROWS = 20
PREVIEW_ERRORS = 200
ANNOTATOR_SOURCE = "annotator"


def demonstration_hash(prompt_content_hash: str, response: str) -> str:
    """The prompt's own hash plus the whitespace-normalised response."""
    canonical = prompt_content_hash + "\n" + " ".join(response.split())
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AddedDemonstrations:
    added: list[Demonstration]
    duplicates: int
    """Demonstrations already in the project, or repeated in the input."""
    prompts_added: int
    """Prompts that did not exist yet and were created for the new demonstrations."""
    in_project: int = 0
    """Skipped: the project had them already."""
    repeated: int = 0
    """Skipped: a copy of an earlier record of the input."""


def add_demonstrations(
    session: Session,
    *,
    project_id: int,
    demonstrations: Sequence[ParsedDemonstration],
    author_id: int | None = None,
) -> AddedDemonstrations:
    """Insert the new demonstrations (and their missing prompts) in the caller's transaction."""
    if repository.lock_project(session, project_id) is None:
        raise NotFound(f"No project {project_id}")
    prompt_hashes = [prompt_hash(d.prompt) for d in demonstrations]
    digests = [
        demonstration_hash(ph, d.response)
        for ph, d in zip(prompt_hashes, demonstrations, strict=True)
    ]
    existing = repository.existing_demonstration_hashes(session, project_id, digests)
    seen = set(existing)
    new: list[tuple[ParsedDemonstration, str, str]] = []
    for demo, ph, digest in zip(demonstrations, prompt_hashes, digests, strict=True):
        if digest not in seen:
            seen.add(digest)
            new.append((demo, ph, digest))
    in_project = sum(1 for digest in digests if digest in existing)

    # Prompts: create the missing ones, each with the format it came from as its source
    by_source: dict[str, list[ParsedDemonstration]] = {}
    for demo, _, _ in new:
        by_source.setdefault(demo.source, []).append(demo)
    prompts_added = 0
    for source, demos in by_source.items():
        created = add_prompts(
            session, project_id=project_id, contents=[d.prompt for d in demos], source=source
        )
        prompts_added += len(created.added)
    prompt_ids = repository.prompt_ids_by_hash(session, project_id, [ph for _, ph, _ in new])

    added = [
        Demonstration(
            project_id=project_id,
            prompt_id=prompt_ids[ph],
            response=demo.response,
            content_hash=digest,
            source=demo.source,
            author_id=author_id,
        )
        for demo, ph, digest in new
    ]
    session.add_all(added)
    session.flush()
    return AddedDemonstrations(
        added=added,
        duplicates=len(demonstrations) - len(added),
        prompts_added=prompts_added,
        in_project=in_project,
        repeated=len(demonstrations) - len(added) - in_project,
    )


def add_annotator_demonstration(
    session: Session, *, project_id: int, prompt_id: int, response: str, author_id: int
) -> int | None:
    """An annotator's answer to a task's prompt: the new row's id, or None when the project
    already has this answer to this prompt. Takes no project lock (it runs inside a submit)."""
    response = response.strip()
    if not response:
        raise InvalidInput("The demonstration is empty", details={"field": "demonstration"})
    prompt = session.get(Prompt, prompt_id)
    if prompt is None or prompt.project_id != project_id:
        raise NotFound(f"No prompt {prompt_id} in project {project_id}")
    return repository.insert_demonstration_if_new(
        session,
        {
            "project_id": project_id,
            "prompt_id": prompt_id,
            "response": response,
            "content_hash": demonstration_hash(prompt.content_hash, response),
            "source": ANNOTATOR_SOURCE,
            "author_id": author_id,
            "created_at": utcnow(),
        },
    )


# Upload: preview → confirm (staged like the prompt import, app.projects.imports)


@dataclass(frozen=True)
class PreviewRow:
    demonstration: ParsedDemonstration
    status: str  # "new", "in project" or "repeated in file"


@dataclass(frozen=True)
class DemonstrationPreview:
    token: str | None
    """Pass to confirm_demonstration_import; None when nothing in the file is new."""
    filename: str
    parsed: DemonstrationParse
    new: int
    in_project: int
    repeated: int
    new_prompts: int
    """Prompts the new demonstrations will create (the others are in the project already)."""
    rows: list[PreviewRow]
    errors: list[LineError]
    """The first PREVIEW_ERRORS errors; parsed.errors has them all."""


@dataclass(frozen=True)
class DemonstrationImportOutcome:
    filename: str
    added: int
    in_project: int
    """Skipped: the project had them already (some may have arrived since the preview)."""
    repeated: int
    """Skipped: a copy of an earlier record of the file."""
    prompts_added: int
    errors: int

    @property
    def duplicates(self) -> int:
        return self.in_project + self.repeated


def preview_demonstration_import(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    data: bytes,
    filename: str,
    fmt: str | None,
    staging_dir: Path,
) -> DemonstrationPreview:
    """Parse an upload, count what is new against the project, and stage it for confirm."""
    require_project(session, project_id)
    if not data.strip():
        raise InvalidInput("The file is empty", details={"field": "file"})
    parsed = parse_demonstrations(data, filename, fmt)
    prompt_hashes = [prompt_hash(d.prompt) for d in parsed.demonstrations]
    digests = [
        demonstration_hash(ph, d.response)
        for ph, d in zip(prompt_hashes, parsed.demonstrations, strict=True)
    ]
    existing = repository.existing_demonstration_hashes(session, project_id, digests)
    statuses = import_statuses(digests, existing)
    new_prompt_hashes = {ph for ph, s in zip(prompt_hashes, statuses, strict=True) if s == "new"}
    known_prompts = repository.existing_prompt_hashes(session, project_id, new_prompt_hashes)
    new = statuses.count("new")
    token = None
    if new:
        token = stage_upload(
            staging_dir,
            {
                "kind": "demonstrations",
                "project_id": project_id,
                "user_id": user_id,
                "filename": filename,
                "errors": len(parsed.errors),
                "prompts": [],  # a prompt-import confirm given this token imports nothing
                "demonstrations": [asdict(d) for d in parsed.demonstrations],
            },
        )
    return DemonstrationPreview(
        token=token,
        filename=filename,
        parsed=parsed,
        new=new,
        in_project=statuses.count("in project"),
        repeated=statuses.count("repeated in file"),
        new_prompts=len(new_prompt_hashes - known_prompts),
        rows=[
            PreviewRow(d, s)
            for d, s in zip(parsed.demonstrations[:PREVIEW_ROWS], statuses, strict=False)
        ],
        errors=parsed.errors[:PREVIEW_ERRORS],
    )


def confirm_demonstration_import(
    session: Session, *, project_id: int, user_id: int, token: str, staging_dir: Path
) -> DemonstrationImportOutcome:
    """Insert the previewed demonstrations; ones that arrived in between count as duplicates."""
    staged = load_staged(staging_dir, token, project_id=project_id, user_id=user_id)
    if staged.get("kind") != "demonstrations":
        raise NotFound("This preview has expired or was already imported; upload the file again")
    demonstrations = [ParsedDemonstration(**d) for d in staged["demonstrations"]]
    added = add_demonstrations(session, project_id=project_id, demonstrations=demonstrations)
    after_commit(session, lambda: discard_staged(staging_dir, token))
    return DemonstrationImportOutcome(
        filename=staged["filename"],
        added=len(added.added),
        in_project=added.in_project,
        repeated=added.repeated,
        prompts_added=added.prompts_added,
        errors=staged["errors"],
    )
