"""Admin leaderboard page: policy versions, annotator agreement, excluding annotators.

Forms post with HTMX and get back the page's `ratings` block; without HTMX, the whole page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser, SessionDep
from app.ids import IdPath
from app.ratings import service
from app.templating import render

router = APIRouter(prefix="/admin/projects/{project_id}", include_in_schema=False)


def _page(request: Request, session: SessionDep, project_id: int, notice: str = "") -> Response:
    page = service.leaderboard_page(session, project_id=project_id)
    ctx = {"page": page, "project_id": project_id, "notice": notice}
    return render(request, "admin_leaderboard.html", ctx, block="ratings")


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    return _page(request, session, project_id)


@router.post("/leaderboard/recompute", response_class=HTMLResponse)
def recompute(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    done = service.recompute(session, project_id=project_id)
    notice = f"Recomputed from {done.comparisons} comparisons."
    return _page(request, session, project_id, notice)


@router.post("/annotators/{user_id}/exclude", response_class=HTMLResponse)
def exclude_annotator(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    user_id: IdPath,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    service.set_excluded(
        session,
        project_id=project_id,
        user_id=user_id,
        excluded=True,
        reason=reason,
        by_user_id=admin.id,
    )
    return _page(request, session, project_id, "Annotator excluded; ratings recomputed.")


@router.post("/annotators/{user_id}/include", response_class=HTMLResponse)
def include_annotator(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, user_id: IdPath
) -> Response:
    service.set_excluded(session, project_id=project_id, user_id=user_id, excluded=False)
    return _page(request, session, project_id, "Annotator included again; ratings recomputed.")
