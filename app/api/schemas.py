"""Shapes of /api/v1: the one error body and the documented error responses, the strict round
body, and the resources."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.models import PolicyKind, PolicyStatus, RoundState
from app.rounds import registry
from app.rounds.schemas import RoundConfigBase


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable machine-readable code: invalid_input (422: a field, or a body "
        "that is not JSON), missing_token / invalid_token (401), missing_scope (403), "
        "not_found (404), method_not_allowed (405, with an Allow header), conflict (409), "
        "payload_too_large (413), rate_limited (429)."
    )
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(
        default=None,
        description="Structured details: for invalid input a list of {field, message}.",
    )


class ErrorResponse(BaseModel):
    """Every error of the API has this shape: the statuses each endpoint documents, and also
    a 404 for a path that is no endpoint and a 405 for a method an endpoint does not serve."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_input",
                        "message": "The request has invalid fields",
                        "details": [{"field": "limit", "message": "Input should be <= 200"}],
                    }
                }
            ]
        }
    )

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        **_error("No token, or an unknown or revoked one."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: _error("The token lacks the scope this endpoint needs."),
    422: _error("Invalid input (or a body that is not JSON); `details` lists the fields."),
    429: {
        **_error("Rate limit reached for this token."),
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("No such resource.")}
TOO_LARGE: dict[int | str, dict[str, Any]] = {413: _error("The body is over the size limit.")}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _error("The request conflicts with the current state.")
}


def download_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The same error responses for a route whose body is a file (NDJSON, tar): FastAPI files
    a `model` under the route's media type, but the errors are JSON like everywhere else."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        status: {**{k: v for k, v in response.items() if k != "model"}, "content": error}
        for status, response in responses.items()
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its $defs inlined, for places OpenAPI cannot $ref into
    (the per-line schema of an NDJSON download)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


# Request bodies

RoundConfig = registry.config_union()
_ROUND_CONFIG: TypeAdapter[Any] = TypeAdapter(RoundConfig)


def _strict_round_config(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The body's JSON types as the schema declares them (no "3" for 3, no false for 0.0),
    and a missing `type` named with its choices instead of pydantic's "Unable to extract tag".
    The round models stay lax: the admin form sends text."""
    if isinstance(value, dict) and value.get("type") is None:
        types = ", ".join(repr(t) for t in registry.names())
        missing = PydanticCustomError(
            "missing_round_type", "Field required: the round type, one of {types}", {"types": types}
        )
        raise ValidationError.from_exception_data(
            "RoundConfig", [InitErrorDetails(type=missing, loc=("type",), input=value)]
        )
    return _ROUND_CONFIG.validate_python(value, strict=True)


if TYPE_CHECKING:
    StrictRoundConfig = RoundConfigBase
else:
    # The union with a type-level Discriminator: FastAPI documents a validator around
    # RoundConfig's field-level one as a broken discriminator mapping.
    StrictRoundConfig = Annotated[
        get_args(RoundConfig)[0],  # the union of the round types
        Discriminator("type"),
        WrapValidator(_strict_round_config),
    ]


# Resources


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": list(examples)})


class ProjectOut(BaseModel):
    model_config = _examples(
        {
            "id": 1,
            "name": "haiku",
            "description": "Short poems",
            "base_model": "tiny",
            "samples_per_prompt": 4,
            "annotations_per_task": 1,
            "created_at": "2026-05-01T09:00:00+00:00",
        }
    )

    id: int
    name: str
    description: str
    base_model: str
    samples_per_prompt: int = Field(description="K: samples shown per ranking task.")
    annotations_per_task: int
    selection: str = Field(
        "uniform",
        description="How new tasks are chosen: 'uniform', or 'active' (where a ranking is worth "
        "most) with `uniform_share` of them still drawn uniformly.",
    )
    uniform_share: float = 0.2
    reliability_weighting: bool = Field(
        True, description="Comparisons weigh by their annotator's fitted reliability."
    )
    reliability_min_tasks: int = 10
    gold_rate: float = Field(0.1, description="Share of leases that go to a gold task.")
    position_correction: bool = True
    judge_suggestions: bool = Field(
        False, description="Annotators see a model judge's order as a marked suggestion."
    )
    suggestion_control_share: float = Field(
        0.25, description="Share of those leases shown without it, to measure its anchoring."
    )
    judge_weight: float = Field(
        0.0, description="Weight of judge (AI) comparisons in training data (0: left out)."
    )
    judge_only: bool = Field(False, description="Rounds train on judge rankings only (RLAIF).")
    created_at: datetime


class LineErrorOut(BaseModel):
    line: int = Field(description="1-based line (or array item) of the body; 0 for the whole.")
    message: str


class Oasst2CountsOut(BaseModel):
    """What an OASST2 body gives per setting (the language filter applies to every count)."""

    model_config = ConfigDict(from_attributes=True)

    turns: str = Field(description="The turns setting the import used: first or all.")
    languages: list[str] = Field(description="The language filter used; empty: every language.")
    first_turns: int = Field(description="Items with turns=first: one per tree.")
    every_turn: int = Field(description="Items with turns=all: each answered user message.")
    deleted: int = Field(
        description="User turns the setting takes, left out as deleted or rejected in review "
        "(themselves or a message above them)."
    )
    other_language: int = Field(description="User turns left out by the language filter.")
    unanswered: int = Field(description="User turns left out for want of an assistant reply.")


class _RecordImportOut(BaseModel):
    """What a prompt or demonstration import read; each kind adds what it did with them."""

    format: str = Field(description="The format used (forced or detected).")
    records: int = Field(description="Records read, good or bad.")
    added: int
    oasst2: Oasst2CountsOut | None = Field(
        default=None,
        description="OASST2 bodies only (absent otherwise): the items each turns setting "
        "gives and the user turns left out.",
    )


SkippedRecords = Annotated[
    list[LineErrorOut],
    Field(description="Records left out (only with skip_invalid=true; otherwise they are a 422)."),
]


class PromptImportOut(_RecordImportOut):
    model_config = _examples(
        {
            "format": "alpaca",
            "records": 3,
            "added": 2,
            "duplicates": 1,
            "in_project": 1,
            "repeated": 0,
            "too_long": 0,
            "token_budget": 192,
            "errors": [],
        }
    )

    duplicates: int = Field(description="Skipped: in_project + repeated.")
    in_project: int = Field(description="Skipped: the project had them already.")
    repeated: int = Field(description="Skipped: an earlier record of the body had the same prompt.")
    too_long: int = Field(
        description="Added prompts longer than token_budget: sampled shortened (a conversation's "
        "oldest turns first, then the start) or skipped, as the project's long_prompts says."
    )
    token_budget: int | None = Field(
        description="Tokens a prompt may take (the model's context less max_new_tokens); null "
        "when the server could not read the tokenizer: the sampling worker measures them then."
    )
    demonstrations_added: int | None = Field(
        default=None,
        description="Only with demonstrations=true (absent otherwise): the body's answers added "
        "as demonstrations (those already in the project or repeated are skipped).",
    )
    errors: SkippedRecords


class DemonstrationImportOut(_RecordImportOut):
    model_config = _examples(
        {
            "format": "dolly",
            "records": 3,
            "added": 2,
            "duplicates": 1,
            "prompts_added": 1,
            "errors": [],
        }
    )

    duplicates: int = Field(
        description="Demonstrations (same prompt and response) already in the project or repeated."
    )
    prompts_added: int = Field(description="Prompts new to the project, created with them.")
    errors: SkippedRecords


class SampleImportOut(BaseModel):
    model_config = _examples(
        {
            "records": 1,
            "lines": 1,
            "prompts_added": 1,
            "versions_added": ["gpt-x"],
            "samples_added": 4,
            "samples_existing": 0,
            "tasks_added": 1,
            "gold_tasks_added": 0,
            "errors": [],
        }
    )

    records: int
    lines: int = Field(description="Lines stored.")
    prompts_added: int
    versions_added: list[str] = Field(description="Models seen for the first time.")
    samples_added: int
    samples_existing: int = Field(description="Samples already uploaded (same text): reused.")
    tasks_added: int = Field(description="Ranking tasks created for the new samples.")
    gold_tasks_added: int = Field(
        0, description="Of tasks_added, gold tasks (lines with \"gold\" or \"gold_bad\")."
    )
    errors: list[LineErrorOut]


class SamplingJobOut(BaseModel):
    model_config = _examples(
        {
            "id": 12,
            "project_id": 1,
            "policy_version": 3,
            "round_id": 7,
            "state": "running",
            "prompts_done": 40,
            "prompts_total": 96,
            "prompts_skipped": 0,
            "prompts_shortened": 2,
            "error": None,
            "created_at": "2026-05-04T10:20:00+00:00",
            "started_at": "2026-05-04T10:20:01+00:00",
            "finished_at": None,
        }
    )

    id: int
    project_id: int
    policy_version: int = Field(description="Number of the policy version it samples.")
    round_id: int | None = Field(description="The round that started it, if one did.")
    state: str = Field(description="queued, running, done, failed or cancelled.")
    prompts_done: int
    prompts_total: int
    prompts_skipped: int = Field(
        description="Prompts a finished job made no task for: the model repeated itself there "
        "and K distinct texts did not come out of further draws."
    )
    prompts_shortened: int = Field(
        description="Prompts a finished job sampled although too long for the model (the "
        "project's long_prompts is truncate): a conversation's oldest turns dropped first, "
        "then the start cut if still too long."
    )
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _registered_round_types(schema: dict[str, Any]) -> None:
    schema["enum"] = registry.names()


class RoundOut(BaseModel):
    model_config = _examples(
        {
            "id": 7,
            "project_id": 1,
            "number": 2,
            "type": "dpo",
            "state": "policy",
            "progress": {"stage": "policy", "step": 40, "total": 120, "eta_seconds": 95.0},
            "error": None,
            "cancel_requested": False,
            "base_policy_version_id": 3,
            "snapshot_id": 5,
            "policy_version_id": None,
            "created_at": "2026-05-04T10:00:00+00:00",
            "started_at": "2026-05-04T10:00:02+00:00",
            "finished_at": None,
        }
    )

    id: int
    project_id: int
    number: int
    type: str = Field(
        description="The round's type, one of the registered round types.",
        json_schema_extra=_registered_round_types,
    )
    state: RoundState
    progress: dict[str, Any] = Field(
        description="stage, stage_index/stages, step/total, eta_seconds, latest metrics."
    )
    error: str | None
    cancel_requested: bool
    base_policy_version_id: int | None
    snapshot_id: int | None = Field(description="Comparisons the round trained on.")
    policy_version_id: int | None = Field(description="The version the round registered.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RoundDetail(RoundOut):
    config: dict[str, Any] = Field(description="The validated configuration (defaults filled).")
    metrics: dict[str, Any] = Field(
        description="Per stage: series of per-step/per-epoch metrics; summaries (gate, ...)."
    )


_TRAINED_VERSION_EXAMPLE: dict[str, Any] = {
    "id": 3,
    "project_id": 1,
    "number": 2,
    "name": "round 1 (reward_ppo)",
    "kind": "trained",
    "status": "current",
    "parent_id": 1,
    "round_id": 6,
    "reward_model_version_id": 2,
    "snapshot_id": 4,
    "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
    "has_adapter": True,
    "merged_adapters": 0,
    "metrics": {"kl": 3.1},
    "human_verdict": "better",
    "created_at": "2026-05-04T11:00:00+00:00",
}


class PolicyVersionOut(BaseModel):
    model_config = _examples(_TRAINED_VERSION_EXAMPLE)

    id: int
    project_id: int
    number: int
    name: str
    kind: PolicyKind
    status: PolicyStatus
    parent_id: int | None = Field(description="The version it was trained from.")
    round_id: int | None
    reward_model_version_id: int | None
    snapshot_id: int | None
    base_model: str | None
    has_adapter: bool = Field(description="Whether a LoRA adapter can be downloaded as is.")
    merged_adapters: int = Field(
        description="Adapters merged into the base before this one applies (then only "
        "merged=true downloads a loadable model)."
    )
    metrics: dict[str, Any]
    human_verdict: Literal["better", "worse"] | None = Field(
        description="What annotators' rankings say of this version against its parent once "
        "the leaderboard's interval resolves; a current version rated worse can be rolled back."
    )
    created_at: datetime


class LineageEntry(BaseModel):
    id: int
    number: int
    name: str
    kind: PolicyKind
    round_id: int | None


class PolicyVersionDetail(PolicyVersionOut):
    lineage: list[LineageEntry] = Field(description="Ancestors, oldest first, then this one.")


class RollBackOut(BaseModel):
    model_config = _examples(
        {
            "retired": {
                **_TRAINED_VERSION_EXAMPLE,
                "status": "retired",
                "metrics": {
                    "rolled_back": {
                        "at": "2026-05-06T10:00:00+00:00",
                        "by_user_id": 1,
                        "by": "admin",
                        "to_version": 1,
                        "human_verdict": "worse",
                    }
                },
                "human_verdict": "worse",
            },
            "current": {
                "id": 1,
                "project_id": 1,
                "number": 1,
                "name": "base",
                "kind": "base",
                "status": "current",
                "parent_id": None,
                "round_id": None,
                "reward_model_version_id": None,
                "snapshot_id": None,
                "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
                "has_adapter": False,
                "merged_adapters": 0,
                "metrics": {},
                "human_verdict": None,
                "created_at": "2026-05-01T09:00:00+00:00",
            },
        }
    )

    retired: PolicyVersionOut = Field(description="The version rolled back from, now retired.")
    current: PolicyVersionOut = Field(description="Its parent, current again.")
