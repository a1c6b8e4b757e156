"""The one place errors are rendered: an AppError (and the framework's own errors, invalid
fields, a NUL in text) as `{"error": {"code", "message", "details"}}` JSON for the API, as the
error page (or an HTMX fragment) for a browser. app.main registers these handlers; the API's
route class (app/api/routing.py) renders through `handle_app_error` too.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount

from app.deps import LoginRequired
from app.errors import AppError, MethodNotAllowed, RateLimited, http_error
from app.templating import render


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
