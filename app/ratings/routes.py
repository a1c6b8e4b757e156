"""Admin leaderboard page: policy versions, annotator agreement, the paged annotator table,
excluding annotators.

Forms post with HTMX and get back the page's `ratings` block (the annotator table at the page
and sort they were posted from, sent as hidden fields); without HTMX, the whole page. The
table's sort and page links fetch only the table (GET .../annotators) with HTMX, and the whole
page at that page and sort without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser, SessionDep
from app.ids import IdPath
from app.ratings import annotators, service
from app.ratings.repository import Raters
from app.templating import render

router = APIRouter(prefix="/admin/projects/{project_id}", include_in_schema=False)

MAX_PAGE = 1_000_000
"""Past the last page shows the last page; this only keeps the number an integer."""


@dataclass(frozen=True)
class TableParams:
    """Which page of the annotator table, sorted how (validated by the table service)."""

    page: int = 1
    sort: str = "name"
    order: str | None = None


def _table_query(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    sort: Annotated[str, Query(max_length=32)] = "name",
    order: Annotated[str | None, Query(max_length=4)] = None,
) -> TableParams:
    return TableParams(page, sort, order or None)


def _table_form(
    page: Annotated[int, Form(ge=1, le=MAX_PAGE)] = 1,
    sort: Annotated[str, Form(max_length=32)] = "name",
    order: Annotated[str | None, Form(max_length=4)] = None,
) -> TableParams:
    return TableParams(page, sort, order or None)


TableQuery = Annotated[TableParams, Depends(_table_query)]
TableForm = Annotated[TableParams, Depends(_table_form)]


def _table(session: SessionDep, project_id: int, params: TableParams) -> annotators.AnnotatorTable:
    return annotators.annotator_table(
        session, project_id=project_id, page=params.page, sort=params.sort, order=params.order
    )


def _page(
    request: Request,
    session: SessionDep,
    project_id: int,
    notice: str = "",
    table: annotators.AnnotatorTable | None = None,
    raters: Raters | None = None,
) -> Response:
    table = table or _table(session, project_id, TableParams())
    page = service.leaderboard_page(session, project_id=project_id, raters=raters)
    ctx = {"page": page, "project_id": project_id, "notice": notice, "table": table}
    return render(request, "admin_leaderboard.html", ctx, block="ratings")


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    params: TableQuery,
    raters: Annotated[Raters | None, Query()] = None,
) -> Response:
    """`?raters=human|ai|all`: the versions rated by people, model judges or both."""
    table = _table(session, project_id, params)
    return _page(request, session, project_id, table=table, raters=raters)


@router.get("/annotators", response_class=HTMLResponse)
def annotator_table(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, params: TableQuery
) -> Response:
    """The table alone for HTMX (a sort or page link); the whole page for a plain GET, and for
    HTMX restoring a page missing from its history cache."""
    table = _table(session, project_id, params)
    headers = request.headers
    if headers.get("HX-Request") and not headers.get("HX-History-Restore-Request"):
        ctx = {"table": table, "project_id": project_id}
        return render(request, "_annotator_table.html", ctx)
    return _page(request, session, project_id, table=table)


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
    params: TableForm,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    annotators.check_sort(params.sort, params.order)  # a bad form changes nothing
    service.set_excluded(
        session,
        project_id=project_id,
        user_id=user_id,
        excluded=True,
        reason=reason,
        by_user_id=admin.id,
    )
    table = _table(session, project_id, params)
    return _page(request, session, project_id, "Annotator excluded; ratings recomputed.", table)


@router.post("/annotators/{user_id}/include", response_class=HTMLResponse)
def include_annotator(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    user_id: IdPath,
    params: TableForm,
) -> Response:
    annotators.check_sort(params.sort, params.order)
    service.set_excluded(session, project_id=project_id, user_id=user_id, excluded=False)
    table = _table(session, project_id, params)
    notice = "Annotator included again; ratings recomputed."
    return _page(request, session, project_id, notice, table)
