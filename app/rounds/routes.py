"""Round pages: start a round (form per type), watch its progress live, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.deps import AdminUser, SessionDep, SettingsDep
from app.ids import IdPath
from app.rounds import pages, registry, service
from app.templating import render

router = APIRouter(prefix="/admin")
ROUND_TYPE = f"^({'|'.join(registry.names())})$"


@router.get("/projects/{project_id}/rounds", response_class=HTMLResponse)
def rounds_page(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project_id: IdPath,
    type: Annotated[str, Query(pattern=ROUND_TYPE)] = "reward_ppo",
) -> Response:
    context = pages.rounds_context(session, project_id=project_id, round_type=type)
    return render(request, "rounds.html", context, block="config_fields")


@router.post("/projects/{project_id}/rounds")
async def start_round(
    request: Request, session: SessionDep, user: AdminUser, project_id: IdPath
) -> Response:
    form = await request.form()
    # The database work runs in the threadpool: on the event loop, a wait for a lock (the
    # project's row, SQLite's writer) would stall every other request of this worker.
    training_round = await run_in_threadpool(
        pages.start_round_from_form,
        session,
        project_id=project_id,
        form=dict(form),
        user_id=user.id,
    )
    url = f"/admin/rounds/{training_round.id}"
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


@router.get("/rounds/{round_id}", response_class=HTMLResponse)
def round_page(
    request: Request, session: SessionDep, user: AdminUser, settings: SettingsDep, round_id: IdPath
) -> Response:
    context = pages.round_context(session, round_id=round_id, settings=settings)
    return render(request, "round.html", context, block="progress")


@router.post("/rounds/{round_id}/cancel")
def cancel_round(
    request: Request, session: SessionDep, user: AdminUser, round_id: IdPath
) -> Response:
    service.cancel_round(session, round_id=round_id)
    url = f"/admin/rounds/{round_id}"
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
