"""Samples from any model, uploaded, so annotators can rank outputs RankLoop did not write.

A line of the file is {"prompt": text or messages, "samples": [text, ...], "model": name}.
Each model name becomes one external policy version per project (numbered after the existing
ones, status candidate); the prompt is created or reused; samples get ordinals 0, 1, ... per
(version, prompt).

Uploading the same file twice changes nothing: a sample whose text that version already has for
that prompt is reused, and tasks are only made for samples that no task shows yet.

Task rule: per prompt, the samples this upload brought that are in no task yet are dealt into
tasks of K = project.samples_per_prompt, interleaving models (A0 B0 A1 B1 ...) so that a file
with several models for one prompt yields tasks that compare them. There are ⌈n/K⌉ tasks; the
last is topped up with samples already used, so every sample is ranked and every task shows K
distinct samples. A prompt with fewer than K samples in all (but at least 4) gets one task of
them all.

Gold: a line may carry `"gold"` (its known ordering: lists of indices into its `samples`, best
first, ties in one list) or `"gold_bad"` (the index of a sample known to be worst). Such a line
needs exactly K samples and makes one gold task of them, in file order (app.gold); its samples
go into no other task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import PolicyKind, PolicyStatus, PolicyVersion, RankingTask, Sample, TaskSample
from app.projects import repository
from app.projects.prompt_import import (
    MAX_PROMPT_CHARS,
    BadRecord,
    LineError,
    PromptContent,
    Record,
    prompt_content,
    read_records,
)
from app.projects.service import add_prompts, prompt_hash, require_project
from app.ratings.pairs import InvalidRanking, validate_ranking

MIN_SAMPLES = 4
MAX_SAMPLES_PER_LINE = 64
MAX_MODEL_NAME = 200
PROMPT_SOURCE = "sample_upload"


@dataclass(frozen=True)
class SampleLine:
    line: int
    content: PromptContent
    samples: list[str]
    model: str
    gold: list[list[int]] | None = None
    """Known ordering, indices into `samples`; or:"""
    gold_bad: int | None = None


@dataclass
class SampleParseResult:
    lines: list[SampleLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    records: int = 0


@dataclass(frozen=True)
class SampleUploadResult:
    lines: int
    prompts_added: int
    versions_added: list[str]
    samples_added: int
    samples_existing: int
    tasks_added: int
    """Gold tasks included."""
    gold_tasks_added: int = 0


def parse_sample_file(
    data: bytes, filename: str, *, default_model: str = "", k: int | None = None
) -> SampleParseResult:
    """Lines of a samples file (JSONL or a JSON array); `default_model` fills a missing model.
    With `k` (the project's samples per task), a gold line must have exactly k samples."""
    if filename.lower().removesuffix(".gz").endswith((".csv", ".tsv")):
        raise InvalidInput(
            'Sample files are JSON Lines: {"prompt": ..., "samples": [...], "model": ...}',
            details={"field": "file"},
        )
    result = SampleParseResult()
    for item in read_records(data, filename):
        result.records += 1
        if isinstance(item, LineError):
            result.errors.append(item)
            continue
        try:
            result.lines.append(_sample_line(item, default_model, k))
        except BadRecord as exc:
            result.errors.append(LineError(item.line, str(exc)))
    return result


def _sample_line(record: Record, default_model: str, k: int | None = None) -> SampleLine:
    data = record.data
    content = prompt_content(data.get("prompt"))
    samples = data.get("samples")
    if samples is None:
        raise BadRecord("missing field 'samples'")
    if not isinstance(samples, list) or not all(isinstance(s, str) for s in samples):
        raise BadRecord("'samples' must be a list of strings")
    if not MIN_SAMPLES <= len(samples) <= MAX_SAMPLES_PER_LINE:
        raise BadRecord(
            f"a line needs {MIN_SAMPLES} to {MAX_SAMPLES_PER_LINE} samples, got {len(samples)}"
        )
    if any(len(s) > MAX_PROMPT_CHARS for s in samples):
        raise BadRecord(f"a sample is longer than {MAX_PROMPT_CHARS} characters")
    model = data.get("model", default_model)
    if model is None or model == "":
        model = default_model
    if not isinstance(model, str):
        raise BadRecord("'model' must be a string")
    model = model.strip()
    if not model:
        raise BadRecord("missing field 'model' (or give a model name in the form)")
    if len(model) > MAX_MODEL_NAME:
        raise BadRecord(f"'model' is longer than {MAX_MODEL_NAME} characters")
    gold, gold_bad = _gold_answer(data, len(samples), k)
    return SampleLine(record.line, content, list(samples), model, gold, gold_bad)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _gold_answer(
    data: dict[str, Any], n: int, k: int | None
) -> tuple[list[list[int]] | None, int | None]:
    """The line's optional known answer, checked against its n samples."""
    gold, gold_bad = data.get("gold"), data.get("gold_bad")
    if gold is None and gold_bad is None:
        return None, None
    if gold is not None and gold_bad is not None:
        raise BadRecord("give either 'gold' or 'gold_bad', not both")
    if k is not None and n != k:
        raise BadRecord(
            f"a gold line makes one task, so it needs exactly {k} samples (the project's "
            f"samples per task), got {n}"
        )
    if gold_bad is not None:
        if not _is_index(gold_bad) or not 0 <= gold_bad < n:
            raise BadRecord(f"'gold_bad' must be the index of one of the samples (0 to {n - 1})")
        return None, int(gold_bad)
    if not isinstance(gold, list) or not all(
        isinstance(group, list) and all(_is_index(i) for i in group) for group in gold
    ):
        raise BadRecord("'gold' must be lists of sample indices, best first, e.g. [[0], [2, 1]]")
    try:
        validate_ranking(gold, range(n))
    except InvalidRanking as exc:
        raise BadRecord(f"'gold' (indices into 'samples'): {exc}") from None
    if len(gold) < 2:
        raise BadRecord("'gold' ties every sample: it says nothing")
    return [list(group) for group in gold], None


def upload_samples(
    session: Session, *, project_id: int, lines: Sequence[SampleLine]
) -> SampleUploadResult:
    """Store the lines' prompts, versions, samples and tasks (see the module docstring)."""
    project = repository.lock_project(session, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}")

    # Prompts: create the new ones, then find every line's prompt
    contents = [line.content for line in lines]
    added = add_prompts(session, project_id=project.id, contents=contents, source=PROMPT_SOURCE)
    prompt_ids = repository.prompt_ids_by_hash(
        session, project.id, (prompt_hash(c) for c in contents)
    )
    line_prompts = [prompt_ids[prompt_hash(c)] for c in contents]

    # Versions: one external version per model name
    versions = repository.external_versions(session, project.id)
    number = repository.max_version_number(session, project.id)
    versions_added: list[str] = []
    for line in lines:
        if line.model not in versions:
            number += 1
            versions[line.model] = PolicyVersion(
                project_id=project.id,
                number=number,
                name=line.model,
                kind=PolicyKind.external,
                status=PolicyStatus.candidate,
            )
            session.add(versions[line.model])
            versions_added.append(line.model)
    session.flush()

    # Samples: reuse those with the same text, number the new ones after the existing ones
    unmatched: dict[tuple[int, int], list[Sample]] = {}
    next_ordinal: dict[tuple[int, int], int] = {}
    texts: dict[tuple[int, int], set[str]] = {}
    for sample in repository.samples_of(
        session,
        version_ids={versions[line.model].id for line in lines},
        prompt_ids=line_prompts,
    ):
        key = (sample.policy_version_id, sample.prompt_id)
        unmatched.setdefault(key, []).append(sample)
        next_ordinal[key] = max(next_ordinal.get(key, 0), sample.ordinal + 1)
        texts.setdefault(key, set()).add(sample.text)
    touched: dict[int, dict[int, list[Sample]]] = {}  # prompt → version → samples, file order
    created: list[Sample] = []
    gold_lines: dict[int, tuple[SampleLine, int, list[Sample]]] = {}  # file line → its samples
    for line, prompt_id in zip(lines, line_prompts, strict=True):
        version_id = versions[line.model].id
        key = (version_id, prompt_id)
        pool = unmatched.setdefault(key, [])
        seen = texts.setdefault(key, set())
        for text in line.samples:
            chosen = next((s for s in pool if s.text == text), None)
            if chosen is not None:
                pool.remove(chosen)
            else:
                chosen = Sample(
                    project_id=project.id,
                    prompt_id=prompt_id,
                    policy_version_id=version_id,
                    ordinal=next_ordinal.get(key, 0),
                    text=text,
                    generation_params={"uploaded": True, "model": line.model},
                    is_empty=not text.strip(),
                    is_duplicate=text in seen,
                )
                next_ordinal[key] = chosen.ordinal + 1
                seen.add(text)
                created.append(chosen)
            if line.gold is None and line.gold_bad is None:
                touched.setdefault(prompt_id, {}).setdefault(version_id, []).append(chosen)
            else:
                gold_lines.setdefault(line.line, (line, prompt_id, []))[2].append(chosen)
    session.add_all(created)
    session.flush()
    gold_tasks = _make_gold_tasks(
        session,
        project_id=project.id,
        lines=list(gold_lines.values()),
        required=project.annotations_per_task,
    )

    tasks_added = _make_tasks(
        session,
        project_id=project.id,
        touched=touched,
        k=project.samples_per_prompt,
        required=project.annotations_per_task,
    )
    return SampleUploadResult(
        lines=len(lines),
        prompts_added=len(added.added),
        versions_added=versions_added,
        samples_added=len(created),
        samples_existing=sum(len(s) for v in touched.values() for s in v.values())
        + sum(len(samples) for _, _, samples in gold_lines.values())
        - len(created),
        tasks_added=tasks_added + gold_tasks,
        gold_tasks_added=gold_tasks,
    )


def _make_gold_tasks(
    session: Session,
    *,
    project_id: int,
    lines: list[tuple[SampleLine, int, list[Sample]]],
    required: int,
) -> int:
    """One gold task per gold line, its samples in file order; none for a line whose samples
    are all in a task already (the same file uploaded again)."""
    tasked = repository.tasked_sample_ids(
        session, [s.id for _, _, samples in lines for s in samples]
    )
    made = 0
    for line, prompt_id, samples in lines:
        if all(s.id in tasked for s in samples):
            continue
        ids = [s.id for s in samples]
        task = RankingTask(
            project_id=project_id,
            prompt_id=prompt_id,
            required_annotations=required,
            gold=True,
            gold_groups=[[ids[i] for i in group] for group in line.gold] if line.gold else None,
            gold_bad_sample_id=ids[line.gold_bad] if line.gold_bad is not None else None,
        )
        session.add(task)
        session.flush()
        session.add_all(
            TaskSample(task_id=task.id, sample_id=sample_id, position=position)
            for position, sample_id in enumerate(ids)
        )
        made += 1
    session.flush()
    return made


def _make_tasks(
    session: Session,
    *,
    project_id: int,
    touched: dict[int, dict[int, list[Sample]]],
    k: int,
    required: int,
) -> int:
    all_ids = [s.id for by_version in touched.values() for ss in by_version.values() for s in ss]
    tasked = repository.tasked_sample_ids(session, all_ids)
    planned: list[tuple[RankingTask, list[Sample]]] = []
    for prompt_id, by_version in touched.items():
        fresh = _interleave([[s for s in ss if s.id not in tasked] for ss in by_version.values()])
        used = _interleave([[s for s in ss if s.id in tasked] for ss in by_version.values()])
        pool = fresh + used
        size = min(k, len(pool))
        for start in range(0, len(fresh), size):
            shown = [pool[(start + j) % len(pool)] for j in range(size)]
            task = RankingTask(
                project_id=project_id, prompt_id=prompt_id, required_annotations=required
            )
            planned.append((task, shown))
    session.add_all(task for task, _ in planned)
    session.flush()
    session.add_all(
        TaskSample(task_id=task.id, sample_id=sample.id, position=position)
        for task, shown in planned
        for position, sample in enumerate(shown)
    )
    session.flush()
    return len(planned)


def _interleave(lists: Sequence[Sequence[Any]]) -> list[Any]:
    """Round-robin: [[a0, a1], [b0]] → [a0, b0, a1]."""
    out: list[Any] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


@dataclass(frozen=True)
class SampleUploadReport:
    parsed: SampleParseResult
    result: SampleUploadResult | None
    """None when nothing was stored: no valid line, or errors and import_valid off."""


def upload_sample_file(
    session: Session,
    *,
    project_id: int,
    data: bytes,
    filename: str,
    default_model: str = "",
    import_valid: bool = False,
) -> SampleUploadReport:
    """Parse and store an uploaded samples file. A file with bad lines stores nothing unless
    `import_valid` says to store its valid lines (re-uploading the fixed file is then harmless)."""
    project = require_project(session, project_id)
    if not data.strip():
        raise InvalidInput("The file is empty", details={"field": "file"})
    parsed = parse_sample_file(
        data, filename, default_model=default_model, k=project.samples_per_prompt
    )
    if not parsed.lines or (parsed.errors and not import_valid):
        return SampleUploadReport(parsed, None)
    return SampleUploadReport(
        parsed, upload_samples(session, project_id=project_id, lines=parsed.lines)
    )
