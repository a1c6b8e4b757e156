"""Cursor pagination: cursors carrying the last id seen (keyset, stable under inserts).

A cursor is that id in decimal, so the schema's pattern says exactly which cursors are valid:
any string it allows is a page (perhaps an empty one), never a 422 the schema did not promise.
Clients still treat it as opaque and pass back the `next_cursor` they were given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

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


CURSOR_PATTERN = "^[0-9]{1,18}$"
"""At most 18 digits: every cursor the pattern allows fits a 64-bit id comparison."""


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str) -> int:
    return int(cursor)


def page_params(
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="next_cursor of the previous page (leave out for the first page).",
        ),
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
