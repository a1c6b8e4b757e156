"""Bounds for ids taken from URLs and forms."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Path

MAX_ID = 2**31 - 1
"""Largest id an INTEGER primary key holds on PostgreSQL (every id column is 32-bit there):
bigger ones are a 422, not a driver error."""
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdForm = Annotated[int, Form(ge=1, le=MAX_ID)]
