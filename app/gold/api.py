"""/api/v1/projects/{id}/gold-tasks: mark, list and unmark gold tasks (a write token marks)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.auth import ReadToken, WriteToken
from app.api.pagination import Page, PageDep, make_page
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, CONFLICT, NOT_FOUND
from app.deps import SessionDep
from app.gold import service
from app.gold.schemas import GoldTaskIn, GoldTaskOut
from app.ids import IdPath

router = APIRouter(
    prefix="/api/v1",
    tags=["gold tasks"],
    route_class=ApiRoute,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)


@router.post(
    "/projects/{project_id}/gold-tasks",
    summary="Mark a task as gold",
    description="Give one of the project's tasks a known answer: `groups` (the ordering of all "
    "its samples, best first, ties in one group) or `bad_sample_id` (its worst sample), not "
    "both. The queue then mixes it in at the project's `gold_rate`, once per annotator; its "
    "rankings measure annotators and never enter training data, exports (unless "
    "`include_gold=true`) or version ratings. Marking a gold task again replaces its answer.",
    status_code=201,
    responses=CONFLICT,
)
def mark_gold_task(
    session: SessionDep, token: WriteToken, project_id: IdPath, body: GoldTaskIn
) -> GoldTaskOut:
    return service.mark_gold_out(
        session,
        project_id=project_id,
        task_id=body.task_id,
        groups=body.groups,
        bad_sample_id=body.bad_sample_id,
    )


@router.get(
    "/projects/{project_id}/gold-tasks",
    summary="List gold tasks",
    description="The project's gold tasks by id, with how many rankings each has and how "
    "many agree with its known answer.",
)
def list_gold_tasks(
    session: SessionDep, token: ReadToken, project_id: IdPath, page: PageDep
) -> Page[GoldTaskOut]:
    found = service.list_gold_tasks(
        session, project_id=project_id, after_id=page.after_id, limit=page.limit + 1
    )
    result = make_page(found, limit=page.limit, id_of=lambda task: task.task_id)
    return Page[GoldTaskOut].model_validate(result)


@router.delete(
    "/projects/{project_id}/gold-tasks/{task_id}",
    summary="Unmark a gold task",
    description="The task becomes an ordinary one (complete if it has its required rankings); "
    "its rankings rejoin training data and version ratings.",
    status_code=204,
)
def unmark_gold_task(
    session: SessionDep, token: WriteToken, project_id: IdPath, task_id: IdPath
) -> Response:
    service.unmark_gold(session, project_id=project_id, task_id=task_id)
    return Response(status_code=204)
