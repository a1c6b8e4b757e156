"""/api/v1 judges: add, list, read, edit, pause and resume a project's model judges."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.api.auth import ReadToken, WriteToken
from app.api.routing import ApiRoute
from app.api.schemas import AUTH_RESPONSES, CONFLICT, NOT_FOUND
from app.deps import SessionDep
from app.ids import IdPath
from app.judges import service
from app.judges.schemas import JudgeCreate, JudgeList, JudgeOut, JudgeUpdate, PauseIn

router = APIRouter(
    prefix="/api/v1",
    tags=["judges"],
    route_class=ApiRoute,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)


@router.get(
    "/projects/{project_id}/judges",
    summary="List judges",
    description="The project's model judges (annotators of kind 'model'), oldest first.",
)
def list_judges(session: SessionDep, token: ReadToken, project_id: IdPath) -> JudgeList:
    judges = service.list_judges(session, project_id=project_id)
    return JudgeList(items=[JudgeOut.model_validate(judge) for judge in judges])


@router.post(
    "/projects/{project_id}/judges",
    summary="Add a judge",
    description="A model that ranks the project's tasks through the queue, marked as AI. "
    "`api_key_env` names the environment variable the judging worker reads the key from; "
    "a key itself is refused (422) and never stored. The judging job starts after the add.",
    status_code=201,
    responses=CONFLICT,
)
def create_judge(
    session: SessionDep, token: WriteToken, project_id: IdPath, body: JudgeCreate
) -> JudgeOut:
    judge = service.create_judge(
        session, project_id=project_id, data=body, created_by_id=token.user_id
    )
    return JudgeOut.model_validate(judge)


@router.get("/judges/{judge_id}", summary="Read a judge")
def get_judge(session: SessionDep, token: ReadToken, judge_id: IdPath) -> JudgeOut:
    return JudgeOut.model_validate(service.get_judge(session, judge_id))


@router.patch(
    "/judges/{judge_id}",
    summary="Edit a judge",
    description="Only the fields sent change. A new `prompt_template` or `principles` makes "
    "a new `prompt_version`: rankings record the version that made them.",
    responses=CONFLICT,
)
def update_judge(
    session: SessionDep, token: WriteToken, judge_id: IdPath, body: JudgeUpdate
) -> JudgeOut:
    return JudgeOut.model_validate(service.update_judge(session, judge_id=judge_id, data=body))


@router.post(
    "/judges/{judge_id}/pause",
    summary="Pause a judge",
    description="It leases no more tasks until resumed; `reason` is shown with it.",
)
def pause_judge(
    session: SessionDep,
    token: WriteToken,
    judge_id: IdPath,
    body: Annotated[PauseIn | None, Body()] = None,
) -> JudgeOut:
    reason = (body or PauseIn()).reason
    return JudgeOut.model_validate(service.pause_judge(session, judge_id=judge_id, reason=reason))


@router.post(
    "/judges/{judge_id}/resume",
    summary="Resume a judge",
    description="It works the queue again; the judging job starts after the resume.",
)
def resume_judge(session: SessionDep, token: WriteToken, judge_id: IdPath) -> JudgeOut:
    return JudgeOut.model_validate(service.resume_judge(session, judge_id=judge_id))
