"""create_app(): routers, static files, the error handlers (app/error_handlers.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.accounts.routes import router as accounts_router
from app.admin.routes import router as admin_router
from app.annotation.routes import router as annotation_router
from app.api.docs import router as api_docs_router
from app.api.routes import router as api_router
from app.config import get_settings
from app.db import session_scope
from app.error_handlers import (
    handle_app_error,
    handle_data_error,
    handle_http_error,
    handle_validation_error,
)
from app.errors import AppError
from app.gold.api import router as gold_api_router
from app.gold.routes import router as gold_router
from app.jobs import producer
from app.judges.api import router as judges_api_router
from app.judges.measurement_api import router as judge_measures_router
from app.judges.routes import router as judges_router
from app.projects.planner_api import router as planner_router
from app.ratings.routes import router as ratings_router
from app.rounds.routes import router as rounds_router
from app.sqlite_gate import SQLiteRequestGate
from app.templating import STATIC_DIR
from app.tokens.routes import router as tokens_router

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
    slowest requests (bench/annotate_load.py). The job client is built first: the first
    submit would build it anyway."""
    producer()
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="RankLoop",
        version="0.1.0",
        description="Human feedback loop: rank samples, train a reward model, run PPO, repeat."
        '\n\nEvery error of /api/v1 is `{"error": {"code", "message", "details"}}` '
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
    app.include_router(gold_router, include_in_schema=False)
    app.include_router(judges_router, include_in_schema=False)
    app.include_router(api_router)
    app.include_router(planner_router)
    app.include_router(gold_api_router)
    app.include_router(judges_api_router)
    app.include_router(judge_measures_router)
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
