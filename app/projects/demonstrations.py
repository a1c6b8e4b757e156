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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, NotFound
from app.models import Demonstration, Project, Prompt
from app.projects import repository
from app.projects.demonstration_import import (
    FORMAT_LABELS,
    MAX_RESPONSE_CHARS,
    OASST2_DEFAULT,
    ParsedDemonstration,
    parse_demonstrations,
)
from app.projects.imports import Findings, ImportKind, ImportOutcome, PreviewRow, import_statuses
from app.projects.prompt_import import ParsedPrompt
from app.projects.service import Deduplicated, add_sourced_prompts, prompt_hash

ANNOTATOR_SOURCE = "annotator"


def demonstration_hash(prompt_content_hash: str, response: str) -> str:
    """The prompt's own hash plus the whitespace-normalised response."""
    canonical = prompt_content_hash + "\n" + " ".join(response.split())
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AddedDemonstrations(Deduplicated):
    added: list[Demonstration]
    prompts_added: int
    """Prompts that did not exist yet and were created for the new demonstrations."""
    in_project: int = 0
    repeated: int = 0


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
    created = add_sourced_prompts(
        session,
        project_id=project_id,
        contents=[demo.prompt for demo, _, _ in new],
        sources=[demo.source for demo, _, _ in new],
    )
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
        prompts_added=len(created.added),
        in_project=in_project,
        repeated=len(demonstrations) - len(added) - in_project,
    )


# A prompt import's answers (its `demonstrations` setting)


def answers_of(prompts: Sequence[ParsedPrompt]) -> list[ParsedDemonstration]:
    """The answers a prompt file carries (OASST2's best-ranked reply, Alpaca `output`, Dolly
    `response`, TRL `completion` or trailing assistant turn) as demonstrations of their prompts:
    what a demonstration import of the file gives. An answer the demonstration import would
    refuse as too long is left out; its prompt is still imported."""
    return [
        ParsedDemonstration(p.content, p.response, p.source, p.line)
        for p in prompts
        if p.response and len(p.response) <= MAX_RESPONSE_CHARS
    ]


def new_answers(session: Session, project_id: int, prompts: Sequence[ParsedPrompt]) -> int:
    """How many of the file's answers `add_answers` would add (the others are in the project
    already or repeated in the file)."""
    digests = [_digest(demo) for demo in answers_of(prompts)]
    existing = repository.existing_demonstration_hashes(session, project_id, digests)
    return import_statuses(digests, existing).count("new")


def add_answers(
    session: Session, *, project_id: int, prompts: Sequence[ParsedPrompt]
) -> AddedDemonstrations:
    """Add the file's answers as demonstrations, deduplicated as a demonstration import does;
    call it after the prompts are added, in the same transaction."""
    return add_demonstrations(session, project_id=project_id, demonstrations=answers_of(prompts))


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


# Upload: preview → confirm (the import pipeline of app.projects.imports)


def _digest(demo: ParsedDemonstration) -> str:
    return demonstration_hash(prompt_hash(demo.prompt), demo.response)


def _count_new_prompts(
    session: Session,
    project: Project,
    demos: Sequence[ParsedDemonstration],
    statuses: Sequence[str],
) -> Findings:
    """How many prompts the new demonstrations would create."""
    new_prompts = {
        prompt_hash(d.prompt) for d, s in zip(demos, statuses, strict=True) if s == "new"
    }
    known = repository.existing_prompt_hashes(session, project.id, new_prompts)
    # a prompt-import confirm given this token finds no prompts to import
    return Findings(staged={"prompts": []}, new_prompts=len(new_prompts - known))


def _add_staged(session: Session, project_id: int, staged: dict[str, Any]) -> ImportOutcome:
    demos = [ParsedDemonstration(**d) for d in staged["demonstrations"]]
    added = add_demonstrations(session, project_id=project_id, demonstrations=demos)
    return ImportOutcome.of(staged, added, prompts_added=added.prompts_added)


DEMONSTRATIONS = ImportKind[ParsedDemonstration](
    name="demonstrations",
    noun="demonstration",
    format_labels=FORMAT_LABELS,
    parse=parse_demonstrations,
    digest=_digest,
    existing=repository.existing_demonstration_hashes,
    findings=_count_new_prompts,
    row=lambda demo, status: PreviewRow(demo.line, demo.prompt, demo.response, status),
    add_staged=_add_staged,
    oasst2=OASST2_DEFAULT,
)
"""Deduplicated by prompt and response; the preview counts the prompts they would create."""
preview_demonstration_import = DEMONSTRATIONS.preview
confirm_demonstration_import = DEMONSTRATIONS.confirm
