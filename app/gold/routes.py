"""Admin "Gold tasks" page: look a task up, mark it with a known ordering or a known-bad
sample, unmark it; gold tasks and annotators' gold accuracy.

Forms post with HTMX and get back the page's `gold` block; without HTMX, the whole page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser, SessionDep
from app.gold import service
from app.ids import MAX_ID, IdForm, IdPath
from app.templating import render

router = APIRouter(prefix="/admin/projects/{project_id}/gold", include_in_schema=False)


def _page(
    request: Request, session: SessionDep, project_id: int, task_id: int | None, notice: str = ""
) -> Response:
    page = service.gold_page(session, project_id=project_id, task_id=task_id)
    return render(request, "admin_gold.html", {"page": page, "notice": notice}, block="gold")


@router.get("", response_class=HTMLResponse)
def gold_page(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    task_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    return _page(request, session, project_id, task_id)


@router.post("/mark", response_class=HTMLResponse)
def mark_ordering(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    task_id: IdForm,
    sample_id: Annotated[list[int], Form()],
    rank: Annotated[list[str], Form()],
) -> Response:
    groups = service.groups_from_ranks(sample_id, rank)
    service.mark_gold(session, project_id=project_id, task_id=task_id, groups=groups)
    return _page(request, session, project_id, task_id, f"Task {task_id} is gold (ordering).")


@router.post("/mark-bad", response_class=HTMLResponse)
def mark_bad(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    task_id: IdForm,
    bad_sample_id: IdForm,
) -> Response:
    service.mark_gold(session, project_id=project_id, task_id=task_id, bad_sample_id=bad_sample_id)
    notice = f"Task {task_id} is gold (sample {bad_sample_id} known bad)."
    return _page(request, session, project_id, task_id, notice)


@router.post("/{task_id}/from-consensus", response_class=HTMLResponse)
def mark_from_consensus(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, task_id: IdPath
) -> Response:
    service.mark_gold_from_consensus(session, project_id=project_id, task_id=task_id)
    notice = f"Task {task_id} is gold (its annotators' consensus order)."
    return _page(request, session, project_id, task_id, notice)


@router.post("/{task_id}/unmark", response_class=HTMLResponse)
def unmark(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, task_id: IdPath
) -> Response:
    service.unmark_gold(session, project_id=project_id, task_id=task_id)
    return _page(request, session, project_id, None, f"Task {task_id} is an ordinary task again.")
