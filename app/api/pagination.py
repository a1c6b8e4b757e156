"""Cursor pagination: opaque cursors carrying the last id seen (keyset, stable under inserts)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from app.errors import InvalidInput

MAX_LIMIT = 200
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


@dataclass(frozen=True)
class PageParams:
    after_id: int | None
    limit: int


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)["id"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        value = None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**63 - 1:
        raise InvalidInput(
            "Invalid cursor; use the next_cursor of a previous page",
            details=[{"field": "cursor", "message": "not a cursor this API issued"}],
        )
    return value


def page_params(
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
) -> PageParams:
    return PageParams(after_id=decode_cursor(cursor) if cursor else None, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]


def make_page(items: list[Any], *, limit: int, id_of: Any = lambda item: item.id) -> dict[str, Any]:
    """`items` was fetched with limit + 1 rows: the extra one only says another page exists."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(id_of(items[-1])) if more else None}
