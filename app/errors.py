"""Expected failures as typed errors carrying their HTTP status, rendered once for the whole app
by app/error_handlers.py."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class AppError(Exception):
    """An expected failure. A subclass names its status and stable code in its header
    (`class Conflict(AppError, status_code=409, code="conflict")`), or inherits them."""

    status_code = 400
    code = "bad_request"

    def __init_subclass__(
        cls, *, status_code: int | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(AppError, status_code=422, code="invalid_input"): ...


class NotFound(AppError, status_code=404, code="not_found"): ...


class Conflict(AppError, status_code=409, code="conflict"): ...


class Unauthorized(AppError, status_code=401, code="unauthorized"): ...


class Forbidden(AppError, status_code=403, code="forbidden"): ...


class RateLimited(AppError, status_code=429, code="rate_limited"):
    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class MethodNotAllowed(AppError, status_code=405, code="method_not_allowed"):
    def __init__(self, message: str, *, allow: list[str], details: Any = None) -> None:
        super().__init__(message, details=details)
        self.allow = allow


def found(value: T | None, what: str) -> T:
    """`value`, or NotFound("No <what>") when the look-up found nothing."""
    if value is None:
        raise NotFound(f"No {what}")
    return value


def http_error(status_code: int, message: str) -> AppError:
    """An AppError for a status the framework raised (an unknown path, a body too large)."""
    error = AppError(message)
    error.status_code = status_code
    error.code = _HTTP_CODES.get(status_code, f"http_{status_code}")
    return error


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
