"""Judge tests reuse the API tests' tokens."""

from __future__ import annotations

from tests.api.conftest import make_token, reader, writer

__all__ = ["make_token", "reader", "writer"]
