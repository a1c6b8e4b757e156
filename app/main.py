"""create_app(): routers, static files, and the one place errors are rendered."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from app.accounts.routes import router as accounts_router
from app.admin.routes import router as admin_router
from app.annotation.routes import router as annotation_router
from app.api.routes import router as api_router
from app.config import get_settings
from app.db import session_scope
from app.deps import LoginRequired
from app.errors import AppError, RateLimited
from app.ratings.routes import router as ratings_router
from app.rounds.routes import router as rounds_router
from app.sqlite_gate import SQLiteRequestGate
from app.templating import STATIC_DIR, render
from app.tokens.routes import router as tokens_router


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details}}


async def handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
    if isinstance(exc, LoginRequired) and not _wants_json(request):
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)
    if _wants_json(request):
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status_code,
            headers=headers,
        )
    response = render(
        request, "error.html", {"error": exc}, block="error", status_code=exc.status_code
    )
    response.headers.update(headers)
    if request.headers.get("HX-Request"):
        # HTMX does not swap 4xx by default: point the fragment at the page's error slot.
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err["loc"][1:]), "message": err["msg"]}
        for err in exc.errors()
    ]
    return await handle_app_error(
        request, _InvalidRequest("The request has invalid fields", details=details)
    )


class _InvalidRequest(AppError):
    status_code = 422
    code = "invalid_input"


def create_app() -> FastAPI:
    app = FastAPI(
        title="RankLoop",
        version="0.1.0",
        description="Human feedback loop: rank samples, train a reward model, run PPO, repeat.",
    )
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(accounts_router)
    app.include_router(annotation_router)
    app.include_router(admin_router)
    app.include_router(rounds_router)
    app.include_router(ratings_router)
    app.include_router(api_router)
    app.include_router(tokens_router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with session_scope(readonly=True) as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if isinstance(response, HTMLResponse) or response.media_type == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
            )
        return response

    if get_settings().is_sqlite:
        app.add_middleware(SQLiteRequestGate, limit=8)
    return app
