"""The route class every /api/v1 router uses: RFC 7235 headers on 401, rate-limit headers.

app/error_handlers.py renders AppError once for the whole app; this wrapper only adds the
headers the API owes its clients (WWW-Authenticate on 401, X-RateLimit-* on every authorised
response).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.error_handlers import handle_app_error
from app.errors import Unauthorized


class ApiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthorized as exc:
                response = await handle_app_error(request, exc)
                response.headers["WWW-Authenticate"] = 'Bearer realm="rankloop"'
                return response
            rate = getattr(request.state, "rate_limit", None)
            if rate is not None:
                response.headers["X-RateLimit-Limit"] = str(rate[0])
                response.headers["X-RateLimit-Remaining"] = str(rate[1])
            return response

        return route_handler
