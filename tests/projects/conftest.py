"""Project service tests share the admin tests' cheap password hashing, and preview and confirm
imports through `staging`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.projects.imports import ImportKind, ImportOutcome, ImportPreview
from tests.admin.conftest import cheap_password_hashing

__all__ = ["cheap_password_hashing"]


@dataclass
class Staging:
    """Imports previewed and confirmed as the admin pages do, staged in the test's tmp_path."""

    session: Session
    folder: Path

    def preview(
        self,
        kind: ImportKind[Any],
        project_id: int,
        user_id: int,
        data: bytes,
        filename: str = "p.jsonl",
    ) -> ImportPreview:
        where = self._where(project_id, user_id)
        return kind.preview(self.session, data=data, filename=filename, fmt=None, **where)

    def confirm(
        self, kind: ImportKind[Any], project_id: int, user_id: int, token: str
    ) -> ImportOutcome:
        return kind.confirm(self.session, token=token, **self._where(project_id, user_id))

    def _where(self, project_id: int, user_id: int) -> dict[str, Any]:
        return {"project_id": project_id, "user_id": user_id, "staging_dir": self.folder}


def turns(*texts: str) -> list[dict[str, str]]:
    """A conversation that starts with the user and alternates with the assistant."""
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": text} for i, text in enumerate(texts)]


def dolly(instruction: str, context: str, response: str, category: str) -> dict[str, str]:
    """A record of databricks-dolly-15k."""
    return {
        "instruction": instruction,
        "context": context,
        "response": response,
        "category": category,
    }


@pytest.fixture
def staging(db_session: Session, tmp_path: Path) -> Staging:
    return Staging(db_session, tmp_path)
