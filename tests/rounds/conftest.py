"""The round page tests' admin (`client` logged in the way a browser does) and project; the
API tests' read-write token (`writer`) and the stages a started round sends (`sent_stages`);
a critic-free round small enough for CPU."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Project, Role
from tests.api.conftest import make_token, sent_stages, writer
from tests.factories import make_project, make_user
from tests.helpers import login

__all__ = ["make_token", "sent_stages", "writer"]


@pytest.fixture
def admin_csrf(client: httpx.Client, db_session: Session) -> str:
    """Logs `client` in as an admin: the session's CSRF token."""
    make_user(db_session, role=Role.admin, username="round-admin")
    return login(client, "round-admin")


@pytest.fixture
def project(admin_csrf: str, db_session: Session) -> Project:
    """A new project, with `client` logged in as an admin (admin_csrf)."""
    return make_project(db_session)


def section(page: str, start: str, end: str) -> str:
    """The part of `page` between the first `start` and the first `end` after it."""
    return page.split(start, 1)[1].split(end, 1)[0]


def tiny_critic_free_round(key: str, **config: Any) -> dict[str, Any]:
    """An RLOO or GRPO round (`key`: "rloo" or "grpo") small enough for CPU, as
    tests/rounds/test_round_worker.py's TINY_ROUND: two updates of two prompts times four
    answers of 8 new tokens; the gate passes whatever the gain (these tests are about the loop,
    not the gain). `config` adds to it (the reward model's settings, a judge)."""
    return {
        "seed": 0,
        "eval_prompts": 2,
        "max_kl": 1000.0,
        "min_score_gain": -1000.0,
        key: {
            "steps": 2,
            "batch_size": 2,
            "group_size": 4,
            "mini_batch_size": 4,
            "epochs": 1,
            "learning_rate": 1e-2,
            "max_new_tokens": 8,
        },
        **config,
    }
