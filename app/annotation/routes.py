"""Annotator pages: pick a project, get the next task, rank, submit.

Each POST answers three ways: JSON for `Accept: application/json` (simulated annotators, the
load benchmark; shapes in schemas.py), the #task fragment for HTMX, and a redirect to
/annotate for a plain form post.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from app.annotation import service
from app.annotation.schemas import NextTaskOut, SubmitRanking
from app.deps import CurrentUser, SessionDep
from app.errors import InvalidInput
from app.ids import IdForm, IdPath
from app.models import WebSession
from app.templating import render

router = APIRouter()


async def _web_session(request: Request, user: CurrentUser) -> WebSession:
    """Async: it only reads what current_user stored, so it need not cost a threadpool hop."""
    return request.state.web_session  # type: ignore[no-any-return]


CurrentWebSession = Annotated[WebSession, Depends(_web_session)]


async def _submission(request: Request) -> SubmitRanking:
    if "application/json" in request.headers.get("content-type", ""):
        try:
            body: Any = await request.json()
        except (ValueError, RecursionError):
            raise InvalidInput("The body is not valid JSON (or is nested too deeply)") from None
        return SubmitRanking.parse(body)
    return SubmitRanking.parse_form(dict(await request.form()))


Submission = Annotated[SubmitRanking, Depends(_submission)]


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _answer(request: Request, result: BaseModel) -> Response:
    if _wants_json(request):
        return JSONResponse(result.model_dump(mode="json"))
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": "/annotate"})
    return RedirectResponse("/annotate", status_code=303)


def _task_fragment(request: Request, result: NextTaskOut, notice: str = "") -> Response:
    if not request.headers.get("HX-Request"):
        return _answer(request, result)
    context = {
        "task": result.task,
        "counts": result.counts,
        "notice": notice,
        "preparing": result.preparing,
    }
    return render(request, "annotate.html", context, block="task")


@router.get("/annotate", response_class=HTMLResponse)
def annotate_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    web_session: CurrentWebSession,
    choose: bool = False,
) -> Response:
    page = service.annotate_page(session, user_id=user.id, chosen_project_id=web_session.project_id)
    if page.project is None or choose:
        return render(request, "choose_project.html", {"projects": page.projects})
    return render(
        request, "annotate.html", {"page": page, "task": page.task, "counts": page.counts}
    )


@router.post("/annotate/project")
def choose_project(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    web_session: CurrentWebSession,
    project_id: IdForm,
) -> Response:
    service.choose_project(session, web_session=web_session, user_id=user.id, project_id=project_id)
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": "/annotate"})
    return RedirectResponse("/annotate", status_code=303)


@router.post("/annotate/next")
def next_task(
    request: Request, session: SessionDep, user: CurrentUser, web_session: CurrentWebSession
) -> Response:
    result = service.next_task(session, user_id=user.id, chosen_project_id=web_session.project_id)
    return _task_fragment(request, result)


@router.post("/annotate/tasks/{task_id}/submit")
def submit_ranking(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    web_session: CurrentWebSession,
    task_id: IdPath,
    submission: Submission,
) -> Response:
    if not request.headers.get("HX-Request"):
        result = service.submit_ranking(
            session, task_id=task_id, user_id=user.id, submission=submission
        )
        return _answer(request, result)
    # The page swaps in the next task, leased in the same transaction, without a reload.
    _, following = service.submit_then_next(
        session,
        task_id=task_id,
        user_id=user.id,
        submission=submission,
        chosen_project_id=web_session.project_id,
    )
    return _task_fragment(request, following, notice=f"Saved task {task_id}.")


@router.post("/annotate/tasks/{task_id}/skip")
def skip_task(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    web_session: CurrentWebSession,
    task_id: IdPath,
) -> Response:
    result = service.skip_task(session, task_id=task_id, user_id=user.id)
    if not request.headers.get("HX-Request"):
        return _answer(request, result)
    following = service.following_task(
        session, user_id=user.id, chosen_project_id=web_session.project_id
    )
    return _task_fragment(request, following, notice=f"Skipped task {task_id}.")
