"""create_app(): routers, static files, and the one place errors are rendered."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.accounts.routes import router as accounts_router
from app.admin.routes import router as admin_router
from app.annotation.routes import router as annotation_router
from app.api.docs import router as api_docs_router
from app.api.routes import router as api_router
from app.config import get_settings
from app.db import session_scope
from app.deps import LoginRequired
from app.errors import AppError, MethodNotAllowed, RateLimited, http_error
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
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allow)
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
    errors = exc.errors()
    for err in errors:
        if err["type"] == "json_invalid":  # FastAPI reports a body that does not parse here
            where = f" at character {err['loc'][-1]}" if len(err["loc"]) > 1 else ""
            reason = err.get("ctx", {}).get("error", err["msg"])
            return await handle_app_error(request, _not_json(f"{reason}{where}"))
    details = [
        {
            "field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
            "message": _NOT_SENT_AS_JSON
            if tuple(err["loc"]) == ("body",) and isinstance(err.get("input"), bytes)
            else err["msg"],
        }
        for err in errors
    ]
    return await handle_app_error(
        request, _InvalidRequest("The request has invalid fields", details=details)
    )


_NOT_SENT_AS_JSON = "the body must be JSON, sent with Content-Type: application/json"
"""What FastAPI's "Input should be a valid dictionary" means for a body it did not parse."""

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette's own 405 names only the first
    route that matched the path (GET where GET and POST are two routes). Under a mount (the
    static files, which match any method) GET and HEAD."""
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
    return allowed or ["GET", "HEAD"]


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """The framework's own errors (no route, wrong method, a body that does not parse) in the
    app's shape: {"error": ...} for the API, the error page for a browser."""
    assert isinstance(exc, HTTPException)
    error: AppError
    if exc.status_code == 405:
        allow = _allowed_methods(request)
        error = MethodNotAllowed(
            f"{request.method} is not allowed here; allowed: {', '.join(allow)}",
            allow=allow,
            details={"allowed_methods": allow},
        )
    elif exc.status_code == 404 and request.url.path.startswith("/api/"):
        error = http_error(
            404, f"No API endpoint at {request.url.path}; the endpoints are listed at /docs"
        )
    elif exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        error = _not_json("it is not UTF-8 text")
    elif exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        error = _not_json("it is nested too deeply")
    else:
        error = http_error(exc.status_code, str(exc.detail))
    response = await handle_app_error(request, error)
    for name, value in (exc.headers or {}).items():
        response.headers.setdefault(name, value)
    return response


class _InvalidRequest(AppError):
    status_code = 422
    code = "invalid_input"


def _not_json(reason: str) -> AppError:
    """A body sent as JSON that does not parse: the same 422 as any invalid field (as the
    annotation endpoints and the imports answer), naming the body."""
    return _InvalidRequest(
        f"The body is not valid JSON: {reason}", details=[{"field": "body", "message": reason}]
    )


async def handle_data_error(request: Request, exc: Exception) -> Response:
    """PostgreSQL refuses NUL in text, wherever it came from (a form field, a login name, an
    API body): that is the client's input, so a 422; the request's transaction rolled back.
    Other data errors stay 500s: they are bugs."""
    assert isinstance(exc, DataError)
    if "NUL" not in str(exc.orig):
        raise exc
    return await handle_app_error(
        request, _InvalidRequest("Text cannot contain NUL (\\x00) characters")
    )


_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
)


class SecurityHeaders:
    """Pure ASGI rather than `@app.middleware("http")`: that one runs every request through an
    extra task and a body stream, a measurable share of an annotation request's CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", _CONTENT_SECURITY_POLICY)
                    # Pages show live state (a leased task, counters): Back must ask again,
                    # not show a task the annotator already submitted.
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Freeze what is alive once the server has started (modules, routes, templates: ~170k
    objects that live as long as the process), so the collector's full passes skip it. Each
    full pass over them paused a web worker for 100-250 ms under load, the annotation pages'
    slowest requests (bench/annotate_load.py). The job client is imported first: the first
    submit would import it anyway."""
    import worker.tasks  # noqa: F401

    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="RankLoop",
        version="0.1.0",
        description="Human feedback loop: rank samples, train a reward model, run PPO, repeat."
        "\n\nEvery error of /api/v1 is `{\"error\": {\"code\", \"message\", \"details\"}}` "
        "with its HTTP status: the ones each endpoint lists, a 404 for a path that is no "
        "endpoint, and a 405 (with `Allow`) for a method an endpoint does not serve. JSON "
        "bodies are read strictly: a number sent as a string, or a boolean as a number, is a "
        "422.",
        lifespan=_lifespan,
        docs_url=None,  # app/api/docs.py serves /docs from our static files
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_error)
    app.add_exception_handler(DataError, handle_data_error)
    # The OpenAPI schema is the /api/v1 contract: pages and their forms stay out of it.
    app.include_router(accounts_router, include_in_schema=False)
    app.include_router(api_docs_router)
    app.include_router(annotation_router, include_in_schema=False)
    app.include_router(admin_router, include_in_schema=False)
    app.include_router(rounds_router, include_in_schema=False)
    app.include_router(ratings_router, include_in_schema=False)
    app.include_router(api_router)
    app.include_router(tokens_router, include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with session_scope(readonly=True) as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.add_middleware(SecurityHeaders)

    if get_settings().is_sqlite:
        app.add_middleware(SQLiteRequestGate, limit=8)
    return app

