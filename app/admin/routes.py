"""Admin pages (every route takes AdminUser): users, projects, prompt, demonstration and sample
imports, progress.

Forms post with HTMX and get back the named block of the page they sit on; without HTMX they
get the whole page, so every form also works as a plain HTML form.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.admin import service
from app.deps import AdminUser, SessionDep, SettingsDep
from app.errors import InvalidInput
from app.ids import IdPath
from app.projects import demonstrations, imports, sample_upload
from app.projects import service as projects
from app.projects.imports import ImportKind
from app.projects.prompt_import import MAX_UPLOAD_BYTES, Oasst2Options
from app.projects.schemas import ProjectForm
from app.rounds import rollback
from app.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)
ProjectFormDep = Annotated[ProjectForm, Form()]


def _no_store(response: Response) -> Response:
    """Pages that may show a generated password must not be cached."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _redirect(request: Request, url: str) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _read_upload(upload: UploadFile) -> tuple[bytes, str]:
    data = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(
            f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; split it",
            details={"field": "file"},
        )
    return data, upload.filename or "upload"


# Dashboard


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    from app.health import queue_lengths, worker_statuses

    summaries = projects.project_summaries(session)
    context = {
        "summaries": summaries,
        "workers": worker_statuses(session),
        "queues": queue_lengths(),
    }
    return render(request, "admin_dashboard.html", context)


# Users


def _users(
    request: Request,
    session: SessionDep,
    *,
    notice: str = "",
    password: str | None = None,
    search: str = "",
) -> Response:
    listed = service.list_users(session, search=search)
    ctx = {
        "users": listed.users,
        "listed": listed,
        "roles": service.ROLES,
        "notice": notice,
        "password": password,
    }
    return _no_store(render(request, "admin_users.html", ctx, block="users"))


@router.get("/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    return _users(request, session, search=q)


@router.post("/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=20)],
    display_name: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    change = service.create_user(
        session, username=username, display_name=display_name, role=role, password=password
    )
    notice = f"Created {change.user.username} ({change.user.role})."
    return _users(request, session, notice=notice, password=change.password)


@router.post("/users/{user_id}/role", response_class=HTMLResponse)
def change_role(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    user_id: IdPath,
    role: Annotated[str, Form(max_length=20)],
) -> Response:
    user = service.change_role(session, actor=admin, user_id=user_id, role=role)
    return _users(request, session, notice=f"{user.username} is now {user.role}.")


@router.post("/users/{user_id}/active", response_class=HTMLResponse)
def set_active(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    user_id: IdPath,
    active: Annotated[bool, Form()],
) -> Response:
    user = service.set_active(session, actor=admin, user_id=user_id, active=active)
    state = "reactivated" if user.active else "deactivated (and logged out)"
    return _users(request, session, notice=f"{user.username} {state}.")


@router.post("/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(
    request: Request, session: SessionDep, admin: AdminUser, user_id: IdPath
) -> Response:
    change = service.reset_password(session, actor=admin, user_id=user_id)
    notice = f"New password for {change.user.username} (they were logged out)."
    return _users(request, session, notice=notice, password=change.password)


# Projects


@router.get("/projects/new", response_class=HTMLResponse)
def new_project_page(request: Request, admin: AdminUser, settings: SettingsDep) -> Response:
    ctx = {"default_base_model": settings.default_base_model}
    return render(request, "admin_project_new.html", ctx)


@router.post("/projects")
def create_project(
    request: Request, session: SessionDep, admin: AdminUser, form: ProjectFormDep
) -> Response:
    project = projects.create_project(
        session, name=form.name or "", base_model=form.base_model or "", **form.settings()
    )
    return _redirect(request, f"/admin/projects/{project.id}")


def _project(
    request: Request,
    session: SessionDep,
    project_id: int,
    *,
    block: str,
    notice: str = "",
    member_search: str = "",
) -> Response:
    page = service.project_page(session, project_id=project_id, member_search=member_search)
    ctx = {
        "page": page,
        "project": page.project,
        "notice": notice,
        "notice_block": block,  # a whole page (no HTMX) shows the notice in its own card only
        "labels": projects.SETTING_LABELS,
        "stop_strings_text": projects.stop_strings_text(page.project.stop_strings),
    }
    return render(request, "admin_project.html", ctx, block=block)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    return _project(request, session, project_id, block="progress")


@router.post("/projects/{project_id}/sampling", response_class=HTMLResponse)
def sample_more(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    notice = service.sample_more(session, project_id=project_id)
    return _project(request, session, project_id, block="progress", notice=notice)


@router.post("/projects/{project_id}/settings", response_class=HTMLResponse)
def update_project(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    form: ProjectFormDep,
) -> Response:
    service.save_settings(session, project_id=project_id, name=form.name, settings=form.settings())
    return _project(request, session, project_id, block="settings", notice="Settings saved.")


@router.get("/projects/{project_id}/members", response_class=HTMLResponse)
def find_members(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    return _project(request, session, project_id, block="members", member_search=q)


@router.post("/projects/{project_id}/members", response_class=HTMLResponse)
def add_member(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    username: Annotated[str, Form(max_length=200)],
) -> Response:
    added = projects.add_member_named(session, project_id=project_id, username=username)
    name = username.strip()
    notice = f"{name} is now a member." if added else f"{name} was already a member."
    # The list shows the member just added, wherever the username falls among thousands.
    return _project(
        request, session, project_id, block="members", notice=notice, member_search=name
    )


@router.post("/projects/{project_id}/members/{user_id}/remove", response_class=HTMLResponse)
def remove_member(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    user_id: IdPath,
    q: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    projects.remove_member(session, project_id=project_id, user_id=user_id)
    return _project(request, session, project_id, block="members", member_search=q)


@router.post("/projects/{project_id}/versions/{number}/rollback", response_class=HTMLResponse)
def roll_back(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath, number: IdPath
) -> Response:
    done = rollback.roll_back(session, project_id=project_id, number=number, user_id=admin.id)
    notice = f"Rolled back to version {done.current.number}; version {number} is retired."
    return _project(request, session, project_id, block="progress", notice=notice)


# Prompt and demonstration imports: upload → preview → confirm, the same three routes per kind


def _import_page(
    request: Request, session: SessionDep, project_id: int, kind: ImportKind[Any], **ctx: object
) -> Response:
    ctx = {"project": projects.require_project(session, project_id), "kind": kind, **ctx}
    return render(request, "admin_import.html", ctx, block="preview")


def _add_import_routes(kind: ImportKind[Any]) -> None:
    path, noun = f"/projects/{{project_id}}/{kind.name}/import", kind.noun

    @router.get(path, response_class=HTMLResponse, name=f"{noun}_import_page")
    def page(
        request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
    ) -> Response:
        return _import_page(request, session, project_id, kind)

    @router.post(path, response_class=HTMLResponse, name=f"preview_{noun}_import")
    def preview(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        admin: AdminUser,
        project_id: IdPath,
        file: Annotated[UploadFile, File()],
        fmt: Annotated[str, Form(alias="format", max_length=20)] = "",
        turns: Annotated[str, Form(max_length=20)] = "",
        lang: Annotated[str, Form(max_length=200)] = "",
        demonstrations: Annotated[bool, Form()] = False,
    ) -> Response:
        data, filename = _read_upload(file)
        preview = kind.preview(
            session,
            project_id=project_id,
            user_id=admin.id,
            data=data,
            filename=filename,
            fmt=fmt or None,
            staging_dir=settings.data_dir / "uploads",
            oasst2=Oasst2Options.of(turns, lang, default=kind.oasst2),
            demonstrations=demonstrations,
        )
        return _import_page(request, session, project_id, kind, preview=preview)

    @router.post(f"{path}/confirm", response_class=HTMLResponse, name=f"confirm_{noun}_import")
    def confirm(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        admin: AdminUser,
        project_id: IdPath,
        token: Annotated[str, Form(max_length=64)],
    ) -> Response:
        outcome = kind.confirm(
            session,
            project_id=project_id,
            user_id=admin.id,
            token=token,
            staging_dir=settings.data_dir / "uploads",
        )
        return _import_page(request, session, project_id, kind, outcome=outcome)


for _kind in (imports.PROMPTS, demonstrations.DEMONSTRATIONS):
    _add_import_routes(_kind)


# Sample upload


@router.get("/projects/{project_id}/samples/upload", response_class=HTMLResponse)
def sample_upload_page(
    request: Request, session: SessionDep, admin: AdminUser, project_id: IdPath
) -> Response:
    project = projects.require_project(session, project_id)
    return render(request, "admin_sample_upload.html", {"project": project})


@router.post("/projects/{project_id}/samples/upload", response_class=HTMLResponse)
def upload_samples(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    project_id: IdPath,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form(max_length=200)] = "",
    import_valid: Annotated[bool, Form()] = False,
) -> Response:
    data, filename = _read_upload(file)
    report = sample_upload.upload_sample_file(
        session,
        project_id=project_id,
        data=data,
        filename=filename,
        default_model=model,
        import_valid=import_valid,
    )
    ctx = {"project": projects.require_project(session, project_id), "report": report}
    return render(request, "admin_sample_upload.html", ctx, block="result")
