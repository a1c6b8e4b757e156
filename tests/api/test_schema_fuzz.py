"""Property-based run of the served OpenAPI schema (schemathesis) with a valid token: no 5xx,
and every JSON response matches the schema. Derandomized and bounded (about a minute).

The downloads (NDJSON, tar) are not JSON, so schema conformance does not apply to their
bodies; they are still called and must not answer 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from app.config import Settings, get_settings
from app.models import Role
from app.rounds import service as rounds
from app.rounds.snapshots import create_snapshot
from app.tokens import service as tokens
from tests.conftest import FreshDatabase
from tests.export.seed import add_ranking, task_sample_ids
from tests.factories import make_project, make_task, make_user

MAX_EXAMPLES = 25


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@pytest.fixture(scope="module")
def fuzz_token(app_database: FreshDatabase) -> str:
    """A project with a ranking and a snapshot (ids 1, like small generated ids), and a token
    with every scope. The base model cannot be loaded here: merged downloads must fail
    cleanly, not with a 500."""
    with app_database.session() as session:
        admin = make_user(session, role=Role.admin)
        annotator = make_user(session)
        project = make_project(session, base_model="/nonexistent/model")
        task = make_task(session, project)
        add_ranking(session, task, annotator.id, [[s] for s in task_sample_ids(session, task)])
        create_snapshot(session, project_id=project.id, name="s")
        secret = tokens.create_token(
            session,
            name="fuzz",
            scopes=["read", "write", "read:annotators"],
            created_by_id=admin.id,
        ).secret
        session.commit()
    return secret


def _app() -> Any:
    from app.main import create_app

    return create_app()


APP = _app()
# The schema the app serves; requests go in-process to APP (no server, no network).
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex="^/api/v1/")


@pytest.fixture(scope="module", autouse=True)
def _fuzz_app(app_database: FreshDatabase) -> Iterator[None]:
    """APP on the module's database, without a rate limit in the way, and no broker."""
    APP.dependency_overrides[get_settings] = lambda: Settings(api_rate_limit_per_minute=10**6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rounds, "send_stage", lambda round_id, stage: None)
        yield
    APP.dependency_overrides.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_honours_its_openapi_schema(case: Any, fuzz_token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
