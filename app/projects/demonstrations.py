"""Demonstrations (prompt → good response, the SFT data): import, preview/confirm, annotators'.
How they are stored and deduplicated (add_demonstrations) is app.projects.demonstration_store's.

A demonstration is deduplicated per project by a hash of its prompt and its response, so the
same file imported twice, or an annotator writing the answer an import already has, stores it
once. Its prompt is a project prompt: found by the prompt's own content hash, or created (with
the same deduplication as a prompt import), so SFT prompts are also sampled and ranked.

Imports lock the project row first, like prompt imports, so two imports into a project queue.
An annotator's demonstration is written inside a submit with INSERT … ON CONFLICT DO NOTHING
instead: a submit must not lock the project row (every submit of the project would queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, NotFound
from app.models import Project, Prompt
from app.projects import repository
from app.projects.demonstration_import import (
    FORMAT_LABELS,
    OASST2_DEFAULT,
    ParsedDemonstration,
    parse_demonstrations,
)
from app.projects.demonstration_store import (
    add_demonstrations,
    demonstration_digest,
    demonstration_hash,
)
from app.projects.imports import Findings, ImportKind, ImportOutcome, PreviewRow
from app.projects.service import prompt_hash

ANNOTATOR_SOURCE = "annotator"


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
    digest=demonstration_digest,
    existing=repository.existing_demonstration_hashes,
    findings=_count_new_prompts,
    row=lambda demo, status: PreviewRow(demo.line, demo.prompt, demo.response, status),
    add_staged=_add_staged,
    oasst2=OASST2_DEFAULT,
)
"""Deduplicated by prompt and response; the preview counts the prompts they would create."""
