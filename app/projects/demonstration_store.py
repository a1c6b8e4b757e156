"""Demonstrations stored: the hash that deduplicates them per project, and the one insert that
a demonstration import, and a prompt import keeping its file's answers, go through.

Its own module so that both import pipelines (app.projects.imports for prompts,
app.projects.demonstrations for demonstrations) can use it without importing each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Demonstration
from app.projects import repository
from app.projects.demonstration_import import MAX_RESPONSE_CHARS, ParsedDemonstration
from app.projects.prompt_import import ParsedPrompt
from app.projects.service import Deduplicated, add_sourced_prompts, prompt_hash


def demonstration_hash(prompt_content_hash: str, response: str) -> str:
    """The prompt's own hash plus the whitespace-normalised response."""
    canonical = prompt_content_hash + "\n" + " ".join(response.split())
    return hashlib.sha256(canonical.encode()).hexdigest()


def demonstration_digest(demo: ParsedDemonstration) -> str:
    """The hash that deduplicates a parsed demonstration within its project."""
    return demonstration_hash(prompt_hash(demo.prompt), demo.response)


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
    digests = {demonstration_digest(demo) for demo in answers_of(prompts)}
    return len(digests - repository.existing_demonstration_hashes(session, project_id, digests))


def add_answers(
    session: Session, *, project_id: int, prompts: Sequence[ParsedPrompt]
) -> AddedDemonstrations:
    """Add the file's answers as demonstrations, deduplicated as a demonstration import does;
    call it after the prompts are added, in the same transaction."""
    return add_demonstrations(session, project_id=project_id, demonstrations=answers_of(prompts))
