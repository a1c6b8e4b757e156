"""The REST API's interactive reference at /docs, served from our own static files.

FastAPI's built-in page loads Swagger UI from a CDN with an inline script: offline
installations cannot reach the CDN, and our Content-Security-Policy blocks both anyway.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    return render(request, "api_docs.html")
