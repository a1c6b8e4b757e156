"""The /api/v1 router: projects, imports, rounds, policy versions; the exports are included
from app.export. Every route needs a bearer token (app.api.auth) and answers errors as
{"error": {"code", "message", "details"}}."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api import service
from app.api.auth import ReadToken, WriteToken
from app.api.pagination import Page, PageDep
from app.api.routing import ApiRoute
from app.api.schemas import (
    AUTH_RESPONSES,
    CONFLICT,
    NOT_FOUND,
    TOO_LARGE,
    DemonstrationImportOut,
    PolicyVersionDetail,
    PolicyVersionOut,
    ProjectOut,
    PromptImportOut,
    RollBackOut,
    RoundDetail,
    RoundOut,
    SampleImportOut,
    SamplingJobOut,
    StrictRoundConfig,
    download_errors,
)
from app.deps import SessionDep
from app.errors import AppError
from app.export import policies
from app.export.routes import router as export_router
from app.ids import IdPath
from app.judges.suggestions_api import router as suggestions_router
from app.projects.demonstration_import import OASST2_DEFAULT
from app.projects.prompt_import import FORMATS, MAX_UPLOAD_BYTES, Oasst2Options
from app.ratings.api import router as ratings_router

router = APIRouter(prefix="/api/v1")
api = APIRouter(route_class=ApiRoute, responses={**AUTH_RESPONSES, **NOT_FOUND})
T = TypeVar("T")


class PayloadTooLarge(AppError, status_code=413, code="payload_too_large"): ...


# Projects


@api.get("/projects", tags=["projects"], summary="List projects")
def list_projects(session: SessionDep, token: ReadToken, page: PageDep) -> Page[ProjectOut]:
    return service.list_projects(session, page=page)


@api.get("/projects/{project_id}", tags=["projects"], summary="Get a project")
def get_project(session: SessionDep, token: ReadToken, project_id: IdPath) -> ProjectOut:
    return service.get_project(session, project_id=project_id)


# Imports

_BODY_TYPES = {
    "text/csv": "body.csv",
    "text/tab-separated-values": "body.tsv",
}


async def _read_body(request: Request) -> tuple[bytes, str]:
    """The raw body (at most MAX_UPLOAD_BYTES) and a file name that tells the parser its
    container: JSON array or NDJSON are told apart by content, CSV/TSV by Content-Type."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"The body is over {MAX_UPLOAD_BYTES // 2**20} MiB; split it")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"The body is over {MAX_UPLOAD_BYTES // 2**20} MiB; split it")
        chunks.append(chunk)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return b"".join(chunks), _BODY_TYPES.get(media_type, "body.jsonl")


async def _import_body(
    request: Request, importer: Callable[..., T], session: Session, **params: Any
) -> T:
    """Read the raw body, then parse and import it off the event loop."""
    data, filename = await _read_body(request)
    return await run_in_threadpool(importer, session, data=data, filename=filename, **params)


def _body_doc(example: list[dict[str, Any]], description: str) -> dict[str, Any]:
    """OpenAPI for a raw body: a JSON array, or the same objects as NDJSON lines."""
    import json

    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": example,
                },
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "example": "\n".join(json.dumps(x) for x in example) + "\n",
                },
            },
        }
    }


SkipInvalid = Annotated[
    bool,
    Query(
        description="Import the valid records and report the others (default: a body with "
        "any invalid record imports nothing and answers 422)."
    ),
]
FormatQuery = Annotated[
    str | None,
    Query(
        pattern="^(" + "|".join(FORMATS) + ")$",
        description="Force a format (default: detected from the first record).",
    ),
]


TurnsQuery = Annotated[
    Literal["first", "all"] | None,
    Query(
        description="OpenAssistant OASST2 bodies: `first` takes the first user message of each "
        "tree, `all` every user message that has an assistant reply, with the turns above it as "
        "the conversation (default: first for prompts, all for demonstrations)."
    ),
]
LangQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="OpenAssistant OASST2 bodies: keep messages in these languages only, as "
        "comma-separated `lang` codes such as `en,de` (default: every language). A message in "
        "another language is left out with the replies under it.",
    ),
]


KeepAnswers = Annotated[
    bool,
    Query(
        description="Also add the answers the body carries (OpenAssistant OASST2's best-ranked "
        "assistant reply, Alpaca `output`, Dolly `response`, TRL `completion` or a trailing "
        "assistant message) as demonstrations of their prompts, for SFT, in the same "
        "transaction; deduplicated like the demonstration import, and counted in "
        "`demonstrations_added` (absent otherwise). Default: prompts only."
    ),
]


def _no_params() -> dict[str, Any]:
    return {}


def _prompt_params(demonstrations: KeepAnswers = False) -> dict[str, Any]:
    """The prompt import's own query parameters."""
    return {"keep_answers": demonstrations}


def _record_import(
    importer: Callable[..., T],
    name: str,
    oasst2: Oasst2Options,
    params: Callable[..., dict[str, Any]] = _no_params,
) -> Callable[..., Coroutine[Any, Any, T]]:
    """The endpoint of a kind of record (prompts, demonstrations): the raw body, parsed and
    imported like the admin upload, off the event loop; `oasst2` is the kind's OASST2 default,
    `params` a dependency giving the kind's own query parameters to the importer."""

    async def endpoint(
        request: Request,
        session: SessionDep,
        token: WriteToken,
        project_id: IdPath,
        format: FormatQuery = None,
        skip_invalid: SkipInvalid = False,
        turns: TurnsQuery = None,
        lang: LangQuery = None,
        own: dict[str, Any] = Depends(params),
    ) -> T:
        return await _import_body(
            request,
            importer,
            session,
            project_id=project_id,
            fmt=format,
            skip_invalid=skip_invalid,
            oasst2=Oasst2Options.of(turns, lang, default=oasst2),
            **own,
        )

    endpoint.__name__ = endpoint.__qualname__ = name
    return endpoint


import_prompts = api.post(
    "/projects/{project_id}/prompts",
    tags=["imports"],
    summary="Import prompts",
    response_model=PromptImportOut,
    response_model_exclude_unset=True,  # `oasst2` only for OASST2 bodies
    responses=TOO_LARGE,
    openapi_extra=_body_doc(
        [
            {"prompt": "Write a haiku about autumn."},
            {"messages": [{"role": "user", "content": "Hi! Who are you?"}]},
        ],
        "Prompts in any format the admin upload reads: plain ({prompt} with text or messages, "
        "or {messages}), Alpaca, Dolly, OpenAssistant OASST2 (first or every user turn, as "
        "`turns` says) - as a JSON array or NDJSON (text/csv and gzip also work). Prompts "
        "already in the project are skipped; with `demonstrations=true` the body's answers "
        "become demonstrations too.",
    ),
)(_record_import(service.import_prompts, "import_prompts", Oasst2Options(), _prompt_params))

import_demonstrations = api.post(
    "/projects/{project_id}/demonstrations",
    tags=["imports"],
    summary="Import demonstrations (prompt and a good response, for SFT)",
    response_model=DemonstrationImportOut,
    response_model_exclude_unset=True,
    responses=TOO_LARGE,
    openapi_extra=_body_doc(
        [
            {"prompt": "Write a haiku about autumn.", "response": "Red leaves drift and fall…"},
            {
                "messages": [
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                ]
            },
        ],
        "Demonstrations in any format the admin upload reads: plain ({prompt, response}, or "
        "{messages} ending with the assistant's answer), Alpaca, Dolly, OpenAssistant OASST2 "
        "(each user turn `turns` takes, with its best-ranked assistant reply) - as a JSON array or "
        "NDJSON (text/csv and gzip also work). Demonstrations already in the project are "
        "skipped; prompts new to the project are created.",
    ),
)(_record_import(service.import_demonstrations, "import_demonstrations", OASST2_DEFAULT))


@api.post(
    "/projects/{project_id}/samples",
    tags=["imports"],
    summary="Import samples from an outside model",
    responses=TOO_LARGE,
    openapi_extra=_body_doc(
        [
            {
                "prompt": "Write a haiku about autumn.",
                "samples": ["Red leaves…", "Autumn wind…", "Cold rain…", "Harvest moon…"],
                "model": "gpt-x",
            }
        ],
        'Lines of {"prompt": text or messages, "samples": [4 to 64 texts], "model": name}. '
        "Each model becomes an external policy version; new samples are dealt into ranking "
        "tasks of K samples. Sending the same body twice changes nothing. A line with exactly "
        'K samples and "gold" (lists of sample indices, best first, ties together) or '
        '"gold_bad" (the index of a sample known to be worst) makes one gold task: it measures '
        "annotators and never enters training data or version ratings.",
    ),
)
async def import_samples(
    request: Request,
    session: SessionDep,
    token: WriteToken,
    project_id: IdPath,
    model: Annotated[
        str, Query(max_length=200, description="Model name for lines that have none.")
    ] = "",
    skip_invalid: SkipInvalid = False,
) -> SampleImportOut:
    return await _import_body(
        request,
        service.upload_samples,
        session,
        project_id=project_id,
        model=model,
        skip_invalid=skip_invalid,
    )


# Rounds


@api.get("/projects/{project_id}/rounds", tags=["rounds"], summary="List rounds (newest first)")
def list_rounds(
    session: SessionDep, token: ReadToken, project_id: IdPath, page: PageDep
) -> Page[RoundOut]:
    return service.list_rounds(session, project_id=project_id, page=page)


@api.get(
    "/projects/{project_id}/sampling-jobs",
    tags=["rounds"],
    summary="List sampling jobs (newest first) with their progress",
)
def list_sampling_jobs(
    session: SessionDep, token: ReadToken, project_id: IdPath, page: PageDep
) -> Page[SamplingJobOut]:
    return service.list_sampling_jobs(session, project_id=project_id, page=page)


ROUND_EXAMPLES = {
    "dpo": {"summary": "DPO on all comparisons", "value": {"type": "dpo", "beta": 0.1}},
    "reward_ppo": {
        "summary": "Reward model, then PPO",
        "value": {"type": "reward_ppo", "ppo": {"steps": 20, "kl_coef": 0.05}},
    },
    "reward_rloo": {
        "summary": "Reward model, then RLOO (no value head)",
        "value": {"type": "reward_rloo", "rloo": {"group_size": 4, "kl_coef": 0.05}},
    },
    "reward_grpo": {
        "summary": "Reward model, then GRPO (no value head)",
        "value": {"type": "reward_grpo", "grpo": {"group_size": 4, "dr_grpo": True}},
    },
    "sft": {"summary": "SFT on demonstrations", "value": {"type": "sft", "epochs": 2}},
}


@api.post(
    "/projects/{project_id}/rounds",
    tags=["rounds"],
    summary="Start a round",
    status_code=201,
    responses=CONFLICT,
)
def start_round(
    session: SessionDep,
    token: WriteToken,
    project_id: IdPath,
    config: Annotated[StrictRoundConfig, Body(openapi_examples=ROUND_EXAMPLES)],  # type: ignore[arg-type]
) -> RoundDetail:
    return service.start_round(
        session, project_id=project_id, config=config.model_dump(), user_id=token.user_id
    )


@api.get("/rounds/{round_id}", tags=["rounds"], summary="Round status, progress and metrics")
def get_round(session: SessionDep, token: ReadToken, round_id: IdPath) -> RoundDetail:
    return service.round_detail(session, round_id=round_id)


@api.post(
    "/rounds/{round_id}/cancel", tags=["rounds"], summary="Cancel a round", responses=CONFLICT
)
def cancel_round(session: SessionDep, token: WriteToken, round_id: IdPath) -> RoundDetail:
    return service.cancel_round(session, round_id=round_id)


# Policy versions


@api.get(
    "/projects/{project_id}/policies",
    tags=["policies"],
    summary="List policy versions (newest first)",
)
def list_policies(
    session: SessionDep, token: ReadToken, project_id: IdPath, page: PageDep
) -> Page[PolicyVersionOut]:
    return service.list_policies(session, project_id=project_id, page=page)


@api.post(
    "/projects/{project_id}/versions/{number}/rollback",
    tags=["policies"],
    summary="Roll the current version back to its parent",
    description="The parent becomes current again (sampling and the next round start from "
    "it); the version is retired and stays listed, with `metrics.rolled_back` saying who and "
    "when. Offered when annotators rate the current version worse than its parent "
    "(`human_verdict`). 409 while a round is active, or when the version is not current.",
    responses=CONFLICT,
)
def roll_back(
    session: SessionDep, token: WriteToken, project_id: IdPath, number: IdPath
) -> RollBackOut:
    return service.roll_back(session, project_id=project_id, number=number, user_id=token.user_id)


@api.get("/policies/{version_id}", tags=["policies"], summary="A policy version with its lineage")
def get_policy(session: SessionDep, token: ReadToken, version_id: IdPath) -> PolicyVersionDetail:
    return service.policy_detail(session, version_id=version_id)


class TarResponse(StreamingResponse):
    media_type = "application/x-tar"


@api.get(
    "/policies/{version_id}/download",
    tags=["policies"],
    summary="Download a policy version as a directory (tar)",
    response_class=TarResponse,
    responses={
        **download_errors({**AUTH_RESPONSES, **NOT_FOUND, **CONFLICT}),
        200: {
            "description": "A tar of one directory: the LoRA adapter (load with "
            "PeftModel.from_pretrained on its base model) or, with merged=true, the full "
            "weights and tokenizer (AutoModelForCausalLM.from_pretrained). rankloop.json "
            "describes the version.",
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
def download_policy(
    session: SessionDep,
    token: ReadToken,
    version_id: IdPath,
    merged: Annotated[
        bool,
        Query(
            description="Merge the adapter(s) into the base and send full weights (built on "
            "the server the first time, then kept in the artifact store)."
        ),
    ] = False,
) -> TarResponse:
    export = policies.plan_policy_export(session, version_id=version_id, merged=merged)
    files = policies.materialize(export)
    return TarResponse(
        policies.tar_stream(export, files),
        headers={"Content-Disposition": f'attachment; filename="{export.dirname}.tar"'},
    )


router.include_router(api)
router.include_router(export_router)
router.include_router(ratings_router)
router.include_router(suggestions_router)
