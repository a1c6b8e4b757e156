"""Property-based run of the served OpenAPI schema (schemathesis) against /api/v1 with a valid
token and no rate limit. Every check schemathesis has must pass, not only "no 5xx": schema-valid
requests are accepted, schema-violating ones refused, every status, content type, header and
body is the documented one, an undeclared method is a 405 with a true Allow header, a request
without the token is a 401. Derandomized and bounded (about a minute per backend).

The downloads (NDJSON, tar) are not JSON, so schema conformance does not apply to their
bodies; they are still called and checked for everything else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from app.config import Settings, get_settings
from app.models import Role
from app.rounds import service as rounds
from app.rounds.snapshots import create_snapshot
from app.tokens import service as tokens
from tests.conftest import FreshDatabase
from tests.export.seed import add_ranking
from tests.factories import make_project, make_task, make_user, task_sample_ids

MAX_EXAMPLES = 25

# Operations whose schema-valid requests may still be refused with a 422, by design: what they
# check cannot be said in a schema. Imports read a file in one of several formats (the schema
# describes its container, not each format's records); a round is refused when its project
# cannot run it (too few prompts or rankings, a base model that cannot be loaded); export
# filters must name versions, rounds, snapshots and annotators of the project; a judge's
# settings depend on each other (an 'openai' judge needs a base URL) and its name must be
# free in the project. Every other
# check still applies to them, and every other operation must accept what its schema allows.
_SEMANTIC_422 = {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]}
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-method": "POST",
                "include-path-regex": "^/api/v1/projects/[^/]+/(prompts|demonstrations|samples"
                "|rounds)$",
                "checks": {"positive_data_acceptance": _SEMANTIC_422},
            },
            {
                "include-method": "GET",
                "include-path-regex": "^/api/v1/projects/[^/]+/(pairs|rankings)\\.jsonl$",
                "checks": {"positive_data_acceptance": _SEMANTIC_422},
            },
            {
                "include-method": "POST",
                "include-path-regex": "^/api/v1/projects/[^/]+/judges$",
                "checks": {"positive_data_acceptance": _SEMANTIC_422},
            },
            {
                "include-method": "PATCH",
                "include-path-regex": "^/api/v1/judges/[^/]+$",
                "checks": {"positive_data_acceptance": _SEMANTIC_422},
            },
        ]
    }
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


_SECRET = secrets.token_urlsafe(32)
"""The fuzz token's random part, known before the token exists: schemathesis signs the cases
it builds while pytest collects them (`_Bearer`), before any fixture has run."""


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
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tokens, "new_token", lambda nbytes: _SECRET)
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
# The schema the app serves, /api/v1 only; requests go in-process to APP (no server).
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG).include(
    path_regex="^/api/v1/"
)


@schema.auth()
class _Bearer:
    """The token the schemathesis way (not as an extra header on each call), so the cases it
    sends without one, and its check that they are refused, see no token."""

    def get(self, case: Any, ctx: Any) -> str:
        return tokens.TOKEN_PREFIX + _SECRET

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module", autouse=True)
def _fuzz_app(app_database: FreshDatabase) -> Iterator[None]:
    """APP on the module's database, without a rate limit in the way, no broker, and no
    Hugging Face hub (a round's base model is looked up in the local cache only)."""
    APP.dependency_overrides[get_settings] = lambda: Settings(api_rate_limit_per_minute=10**6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rounds, "send_stage", lambda round_id, stage: None)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield
    APP.dependency_overrides.clear()


def test_the_fuzzed_schema_is_the_api_alone_and_every_check_is_on() -> None:
    operations = [result.ok().path for result in schema.get_all_operations()]
    assert operations
    assert all(path.startswith("/api/v1/") for path in operations)
    checks = schema.config.checks
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
        "missing_required_header",
        "ignored_auth",
        "unsupported_method",
        "allow_header_conformance",
    ):
        assert getattr(checks, name).enabled, name


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_honours_its_openapi_schema(case: Any, fuzz_token: str) -> None:
    # No `checks=`: every check schemathesis enables by default runs, so a failure of any
    # of them (not only a 5xx) fails the test.
    case.call_and_validate()
