"""Admin "Judges" page: a project's model judges, their progress, add, edit, pause, resume.

Forms post with HTMX and get back the page's `judges` block; without HTMX, the whole page.
The judge progress card on the project page loads from `/progress` (its `judge_progress`
block).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser, SessionDep
from app.ids import MAX_ID, IdPath
from app.judges import service
from app.templating import render

router = APIRouter(prefix="/admin/projects/{project_id}/judges", include_in_schema=False)


def _page(
    request: Request,
    session: SessionDep,
    project_id: int,
    edit_id: int | None = None,
    notice: str = "",
    block: str = "judges",
) -> Response:
    page = service.judges_page(session, project_id=project_id, edit_id=edit_id)
    return render(request, "admin_judges.html", {"page": page, "notice": notice}, block=block)


@router.get("", response_class=HTMLResponse)
def judges_page(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    edit: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    return _page(request, session, project_id, edit)


@router.get("/progress", response_class=HTMLResponse)
def judge_progress(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    return _page(request, session, project_id, block="judge_progress")


@router.post("", response_class=HTMLResponse)
async def add_judge(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    form = await request.form()
    judge = service.create_from_form(
        session, project_id=project_id, form=form, created_by_id=admin.id
    )
    return _page(request, session, project_id, notice=f"Judge {judge.name!r} added.")


@router.post("/{judge_id}", response_class=HTMLResponse)
async def edit_judge(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, judge_id: IdPath
) -> Response:
    form = await request.form()
    judge = service.update_from_form(session, project_id=project_id, judge_id=judge_id, form=form)
    notice = f"Judge {judge.name!r} saved (prompt version {judge.prompt_version})."
    return _page(request, session, project_id, notice=notice)


@router.post("/{judge_id}/pause", response_class=HTMLResponse)
def pause_judge(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    judge_id: IdPath,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    judge = service.project_judge(session, project_id=project_id, judge_id=judge_id)
    service.pause_judge(session, judge_id=judge.id, reason=reason or "Paused by an admin")
    return _page(request, session, project_id, notice=f"Judge {judge.name!r} paused.")


@router.post("/{judge_id}/resume", response_class=HTMLResponse)
def resume_judge(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, judge_id: IdPath
) -> Response:
    judge = service.project_judge(session, project_id=project_id, judge_id=judge_id)
    service.resume_judge(session, judge_id=judge.id)
    return _page(request, session, project_id, notice=f"Judge {judge.name!r} resumed.")
