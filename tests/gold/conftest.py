"""Gold tests reuse the annotation tests' logged-in annotators and the API tests' tokens."""

from __future__ import annotations

from tests.annotation.conftest import log_in
from tests.api.conftest import make_token, reader, writer

__all__ = ["log_in", "make_token", "reader", "writer"]
