"""API use cases: thin adapters from the domain services to the API's shapes.

The rules live in the domain services (projects, sample upload, rounds); what is added here is
what the API promises on top: all-or-nothing imports unless asked otherwise, page building,
and lineage walking.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from app.api import repository
from app.api.pagination import Page, PageParams, make_page
from app.api.schemas import (
    DemonstrationImportOut,
    LineageEntry,
    LineErrorOut,
    Oasst2CountsOut,
    PolicyVersionDetail,
    PolicyVersionOut,
    ProjectOut,
    PromptImportOut,
    RollBackOut,
    RoundDetail,
    RoundOut,
    SampleImportOut,
    SamplingJobOut,
)
from app.errors import InvalidInput, found
from app.models import PolicyVersion, TrainingRound
from app.projects import demonstrations, imports, sample_upload
from app.projects.demonstration_import import parse_demonstrations
from app.projects.demonstration_store import add_answers
from app.projects.prompt_import import LineError, Oasst2Counts, Oasst2Options, parse_prompts
from app.projects.service import require_project
from app.rounds import rollback
from app.rounds import service as rounds
from app.sampling import service as sampling

# Projects


def list_projects(session: Session, *, page: PageParams) -> Page[ProjectOut]:
    found = repository.projects(session, after_id=page.after_id, limit=page.limit)
    result = make_page(found, limit=page.limit)
    result["items"] = [ProjectOut.model_validate(p) for p in result["items"]]
    return Page[ProjectOut].model_validate(result)


def get_project(session: Session, *, project_id: int) -> ProjectOut:
    return ProjectOut.model_validate(require_project(session, project_id))


# Imports


def _line_errors(errors: list[LineError]) -> list[dict[str, Any]]:
    return [{"field": "body", "line": e.line, "message": e.message} for e in errors]


def _error_list(errors: list[LineError]) -> list[LineErrorOut]:
    return [LineErrorOut(line=e.line, message=e.message) for e in errors]


def _require_body(session: Session, *, project_id: int, data: bytes) -> None:
    require_project(session, project_id)
    if not data.strip():
        raise InvalidInput("The body is empty", details=[{"field": "body", "message": "empty"}])


def _check_records(errors: list[LineError], *, found: int, noun: str, skip_invalid: bool) -> None:
    """All or nothing unless skip_invalid; a body without a single good record is a 422."""
    if errors and not skip_invalid:
        raise InvalidInput(
            f"{len(errors)} record(s) are invalid; nothing was imported",
            details=_line_errors(errors),
        )
    if not found:
        raise InvalidInput(
            f"The body has no {noun}",
            details=_line_errors(errors) or [{"field": "body", "message": f"no {noun}"}],
        )


def _oasst2_counts(counts: Oasst2Counts | None) -> dict[str, Oasst2CountsOut]:
    """The `oasst2` field, set only for an OASST2 body (the endpoints leave unset fields out)."""
    if counts is None:
        return {}
    out = Oasst2CountsOut(
        turns=counts.setting.turns,
        languages=sorted(counts.setting.languages),
        first_turns=counts.first_turns,
        every_turn=counts.every_turn,
        deleted=counts.deleted,
        other_language=counts.other_language,
        unanswered=counts.unanswered,
    )
    return {"oasst2": out}


def import_prompts(
    session: Session,
    *,
    project_id: int,
    data: bytes,
    filename: str,
    fmt: str | None,
    skip_invalid: bool,
    oasst2: Oasst2Options | None = None,
    keep_answers: bool = False,
) -> PromptImportOut:
    """Parse like the admin upload; a body with a bad record imports nothing unless
    skip_invalid, so a script can fix its file and send it again. `keep_answers` also adds
    the body's answers as demonstrations (reported as demonstrations_added, only then)."""
    _require_body(session, project_id=project_id, data=data)
    parsed = parse_prompts(data, filename, fmt, oasst2)
    _check_records(
        parsed.errors, found=len(parsed.prompts), noun="prompts", skip_invalid=skip_invalid
    )
    added = imports.import_prompts(session, project_id=project_id, prompts=parsed.prompts)
    optional: dict[str, Any] = {**_oasst2_counts(parsed.oasst2)}  # fields left out unless set
    if keep_answers:
        answers = add_answers(session, project_id=project_id, prompts=parsed.prompts)
        optional["demonstrations_added"] = len(answers.added)
    return PromptImportOut(
        format=parsed.format,
        records=parsed.records,
        added=len(added.added),
        duplicates=added.duplicates,
        in_project=added.in_project,
        repeated=added.repeated,
        too_long=len(added.too_long),
        token_budget=added.budget,
        errors=_error_list(parsed.errors),
        **optional,
    )


def import_demonstrations(
    session: Session,
    *,
    project_id: int,
    data: bytes,
    filename: str,
    fmt: str | None,
    skip_invalid: bool,
    oasst2: Oasst2Options | None = None,
) -> DemonstrationImportOut:
    """Like the prompt import: a bad record imports nothing unless skip_invalid."""
    _require_body(session, project_id=project_id, data=data)
    parsed = parse_demonstrations(data, filename, fmt, oasst2)
    _check_records(
        parsed.errors,
        found=len(parsed.demonstrations),
        noun="demonstrations",
        skip_invalid=skip_invalid,
    )
    added = demonstrations.add_demonstrations(
        session, project_id=project_id, demonstrations=parsed.demonstrations
    )
    return DemonstrationImportOut(
        format=parsed.format,
        records=parsed.records,
        added=len(added.added),
        duplicates=added.duplicates,
        prompts_added=added.prompts_added,
        errors=_error_list(parsed.errors),
        **_oasst2_counts(parsed.oasst2),
    )


def upload_samples(
    session: Session,
    *,
    project_id: int,
    data: bytes,
    filename: str,
    model: str,
    skip_invalid: bool,
) -> SampleImportOut:
    if filename != "body.jsonl":  # the body's Content-Type said CSV or TSV
        raise InvalidInput(
            "Samples are sent as a JSON array or NDJSON",
            details=[{"field": "body", "message": "CSV is not accepted here"}],
        )
    report = sample_upload.upload_sample_file(
        session,
        project_id=project_id,
        data=data,
        filename=filename,
        default_model=model,
        import_valid=skip_invalid,
    )
    errors = report.parsed.errors
    if report.result is None:
        message = (
            f"{len(errors)} line(s) are invalid; nothing was imported"
            if errors
            else "The body has no sample lines"
        )
        raise InvalidInput(
            message, details=_line_errors(errors) or [{"field": "body", "message": "no lines"}]
        )
    return SampleImportOut(
        records=report.parsed.records, **asdict(report.result), errors=_error_list(errors)
    )


# Rounds


def _round(training_round: TrainingRound, version_id: int | None, model: type[RoundOut]) -> Any:
    fields = {name: getattr(training_round, name, None) for name in model.model_fields}
    fields["policy_version_id"] = version_id
    return model.model_validate(fields)


def list_rounds(session: Session, *, project_id: int, page: PageParams) -> Page[RoundOut]:
    require_project(session, project_id)
    found = repository.newest_first(
        session, TrainingRound, project_id=project_id, before_id=page.after_id, limit=page.limit
    )
    result = make_page(found, limit=page.limit)
    versions = repository.versions_of_rounds(session, [r.id for r in result["items"]])
    result["items"] = [_round(r, versions.get(r.id), RoundOut) for r in result["items"]]
    return Page[RoundOut].model_validate(result)


def list_sampling_jobs(
    session: Session, *, project_id: int, page: PageParams
) -> Page[SamplingJobOut]:
    require_project(session, project_id)
    found = sampling.recent_jobs(
        session, project_id=project_id, before_id=page.after_id, limit=page.limit + 1
    )
    result = make_page(found, limit=page.limit)
    result["items"] = [
        SamplingJobOut.model_validate(job, from_attributes=True) for job in result["items"]
    ]
    return Page[SamplingJobOut].model_validate(result)


def round_detail(session: Session, *, round_id: int) -> RoundDetail:
    training_round = rounds.require_round(session, round_id)
    versions = repository.versions_of_rounds(session, [training_round.id])
    return _round(training_round, versions.get(training_round.id), RoundDetail)  # type: ignore[no-any-return]


def start_round(
    session: Session, *, project_id: int, config: dict[str, Any], user_id: int | None
) -> RoundDetail:
    training_round = rounds.start_round(
        session,
        project_id=project_id,
        round_type=config["type"],
        config=config,
        user_id=user_id,
    )
    return _round(training_round, None, RoundDetail)  # type: ignore[no-any-return]


def cancel_round(session: Session, *, round_id: int) -> RoundDetail:
    rounds.cancel_round(session, round_id=round_id)
    return round_detail(session, round_id=round_id)


# Policy versions


def _policy(version: PolicyVersion) -> dict[str, Any]:
    metrics = dict(version.metrics or {})
    merged = metrics.pop("merged_adapters", []) or []
    return {
        "id": version.id,
        "project_id": version.project_id,
        "number": version.number,
        "name": version.name,
        "kind": version.kind,
        "status": version.status,
        "parent_id": version.parent_id,
        "round_id": version.round_id,
        "reward_model_version_id": version.reward_model_version_id,
        "snapshot_id": version.snapshot_id,
        "base_model": version.base_model,
        "has_adapter": version.artifact_uri is not None,
        "merged_adapters": len(merged),
        "metrics": metrics,
        "human_verdict": version.human_verdict,
        "created_at": version.created_at,
    }


def list_policies(session: Session, *, project_id: int, page: PageParams) -> Page[PolicyVersionOut]:
    require_project(session, project_id)
    found = repository.newest_first(
        session, PolicyVersion, project_id=project_id, before_id=page.after_id, limit=page.limit
    )
    result = make_page(found, limit=page.limit)
    result["items"] = [PolicyVersionOut.model_validate(_policy(v)) for v in result["items"]]
    return Page[PolicyVersionOut].model_validate(result)


def require_version(session: Session, version_id: int) -> PolicyVersion:
    return found(session.get(PolicyVersion, version_id), f"policy version {version_id}")


def policy_detail(session: Session, *, version_id: int) -> PolicyVersionDetail:
    version = require_version(session, version_id)
    versions = repository.project_versions(session, version.project_id)
    chain: list[PolicyVersion] = []
    current: PolicyVersion | None = version
    while current is not None and current not in chain:  # a cycle would be a data bug
        chain.append(current)
        current = versions.get(current.parent_id) if current.parent_id else None
    lineage = [
        LineageEntry(id=v.id, number=v.number, name=v.name, kind=v.kind, round_id=v.round_id)
        for v in reversed(chain)
    ]
    return PolicyVersionDetail.model_validate({**_policy(version), "lineage": lineage})


def roll_back(
    session: Session, *, project_id: int, number: int, user_id: int | None
) -> RollBackOut:
    done = rollback.roll_back(session, project_id=project_id, number=number, user_id=user_id)
    return RollBackOut(
        retired=PolicyVersionOut.model_validate(_policy(done.retired)),
        current=PolicyVersionOut.model_validate(_policy(done.current)),
    )
