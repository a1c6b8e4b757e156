"""Judge tests reuse the API tests' tokens and the annotation tests' log-in."""

from __future__ import annotations

from tests.annotation.conftest import log_in
from tests.api.conftest import make_token, reader, writer

__all__ = ["log_in", "make_token", "reader", "writer"]
