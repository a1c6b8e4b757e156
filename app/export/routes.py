"""GET /api/v1/projects/{id}/pairs.jsonl and rankings.jsonl: streamed NDJSON downloads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.api.auth import ApiPrincipal, ReadToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, NOT_FOUND, download_errors
from app.deps import SessionDep
from app.export import service
from app.export.schemas import PAIR_EXAMPLE, ExportParams, ExportParamsDep
from app.ids import IdPath

router = APIRouter(
    tags=["export"],
    route_class=ApiRoute,
    responses=download_errors({**AUTH_RESPONSES, **NOT_FOUND}),
)


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def _export(
    request: Request,
    session: Session,
    token: ApiPrincipal,
    project_id: int,
    params: ExportParams,
    kind: str,
    stream: Callable[[service.ExportPlan], Iterator[bytes]],
    include_ties: bool = False,
) -> NDJSONResponse:
    """Plan the export in the request's transaction, then stream it as a file download:
    gzipped as a .gz file when asked, or on the wire for Accept-Encoding."""
    plan = service.plan_export(
        session,
        project_id=project_id,
        kind=kind,
        params=params,
        show_names=token.sees_annotators,
        include_ties=include_ties,
    )
    chunks = stream(plan)
    headers = {
        "Content-Disposition": f'attachment; filename="{plan.filename}"',
        "Vary": "Accept-Encoding",
    }
    if params.compress == "gzip":
        return NDJSONResponse(
            service.gzip_chunks(chunks), media_type="application/gzip", headers=headers
        )
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return NDJSONResponse(service.gzip_chunks(chunks), headers=headers)
    return NDJSONResponse(chunks, headers=headers)


def _ndjson_doc(description: str, example: dict[str, Any]) -> dict[int | str, Any]:
    return {
        200: {
            "description": description,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "example": service.json.dumps(example) + "\n",
                },
                "application/gzip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


@router.get(
    "/projects/{project_id}/pairs.jsonl",
    response_class=NDJSONResponse,
    summary="Export preference pairs (TRL format)",
    responses=_ndjson_doc(
        "One JSON object per line (see the PairLine schema): prompt, chosen, rejected as in "
        "TRL's preference format, plus provenance. Loads with "
        '`datasets.load_dataset("json", data_files=...)`.',
        PAIR_EXAMPLE,
    ),
)
def export_pairs(
    request: Request,
    session: SessionDep,
    token: ReadToken,
    project_id: IdPath,
    params: ExportParamsDep,
    include_ties: Annotated[
        bool,
        Query(
            description="Add tied pairs (with `tie: true`; every line then has `tie`). Left "
            "out by default: a trainer would read a tie as a preference."
        ),
    ] = False,
) -> NDJSONResponse:
    return _export(
        request, session, token, project_id, params, "pairs", service.stream_pairs, include_ties
    )


RANKING_EXAMPLE = {
    "ranking_id": 40,
    "task_id": 12,
    "prompt_id": 17,
    "prompt": "Write a haiku about autumn.",
    "groups": [
        [{"sample_id": 301, "text": "Red leaves drift and fall…", "policy_version": 2}],
        [
            {"sample_id": 299, "text": "Autumn is a season.", "policy_version": 1},
            {"sample_id": 300, "text": "Leaves.", "policy_version": 1},
        ],
    ],
    "none_usable": False,
    "none_usable_reason": None,
    "annotator": "annotator-3f9a1c0b",
    "round": 1,
    "created_at": "2026-05-04T10:21:07.123456+00:00",
    "source": "human",
}


@router.get(
    "/projects/{project_id}/rankings.jsonl",
    response_class=NDJSONResponse,
    summary="Export full rankings",
    responses=_ndjson_doc(
        "One JSON object per ranking (see the RankingLine schema): tie groups best first, "
        "with the samples' texts.",
        RANKING_EXAMPLE,
    ),
)
def export_rankings(
    request: Request,
    session: SessionDep,
    token: ReadToken,
    project_id: IdPath,
    params: ExportParamsDep,
) -> NDJSONResponse:
    return _export(request, session, token, project_id, params, "rankings", service.stream_rankings)
