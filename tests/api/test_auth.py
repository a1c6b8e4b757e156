"""API authentication: bearer tokens only, scopes per endpoint, revocation, rate limit."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.ratelimit import SlidingWindowLimiter
from app.config import Settings, get_settings
from app.db import utcnow
from app.errors import RateLimited
from app.models import ApiToken, Project, Prompt, Role
from tests.api.conftest import MakeToken, bearer
from tests.factories import make_user
from tests.helpers import login_new_user

# (method, path, scope it needs, JSON body) for every /api/v1 endpoint
ENDPOINTS = [
    ("GET", "/api/v1/projects", "read", None),
    ("GET", "/api/v1/projects/{p}", "read", None),
    ("POST", "/api/v1/projects/{p}/prompts", "write", [{"prompt": "hi there"}]),
    ("POST", "/api/v1/projects/{p}/samples", "write", [{"prompt": "x", "samples": ["a"] * 4}]),
    ("POST", "/api/v1/projects/{p}/demonstrations", "write", [{"prompt": "x", "response": "y"}]),
    ("GET", "/api/v1/projects/{p}/rounds", "read", None),
    ("GET", "/api/v1/projects/{p}/sampling-jobs", "read", None),
    ("POST", "/api/v1/projects/{p}/rounds", "write", {"type": "dpo"}),
    ("GET", "/api/v1/rounds/{r}", "read", None),
    ("POST", "/api/v1/rounds/{r}/cancel", "write", None),
    ("GET", "/api/v1/projects/{p}/policies", "read", None),
    ("GET", "/api/v1/policies/{v}", "read", None),
    ("GET", "/api/v1/policies/{v}/download", "read", None),
    ("GET", "/api/v1/projects/{p}/pairs.jsonl", "read", None),
    ("GET", "/api/v1/projects/{p}/rankings.jsonl", "read", None),
    ("GET", "/api/v1/projects/{p}/leaderboard", "read", None),
    ("POST", "/api/v1/projects/{p}/versions/{n}/rollback", "write", None),
    ("GET", "/api/v1/projects/{p}/annotators", "read:annotators", None),
    ("POST", "/api/v1/projects/{p}/annotators/{u}/exclusion", "write", {"reason": "x"}),
    ("DELETE", "/api/v1/projects/{p}/annotators/{u}/exclusion", "write", None),
    ("GET", "/api/v1/projects/{p}/gold-tasks", "read", None),
    ("POST", "/api/v1/projects/{p}/gold-tasks", "write", {"task_id": 1, "bad_sample_id": 1}),
    ("DELETE", "/api/v1/projects/{p}/gold-tasks/{t}", "write", None),
    ("GET", "/api/v1/projects/{p}/plan", "read", None),
    ("GET", "/api/v1/projects/{p}/suggestions/report", "read", None),
    ("GET", "/api/v1/projects/{p}/judges", "read", None),
    ("POST", "/api/v1/projects/{p}/judges", "write", {"name": "j", "backend": "hf", "model": "m"}),
    ("GET", "/api/v1/judges/{j}", "read", None),
    ("PATCH", "/api/v1/judges/{j}", "write", {"name": "k"}),
    ("POST", "/api/v1/judges/{j}/pause", "write", None),
    ("POST", "/api/v1/judges/{j}/resume", "write", None),
    ("GET", "/api/v1/judges/{j}/measures", "read", None),
]
IDS = [f"{method} {path}" for method, path, _, _ in ENDPOINTS]
READS = [e for e in ENDPOINTS if e[2] == "read"]
WRITES = [e for e in ENDPOINTS if e[2] != "read"]


def _call(
    client: httpx.Client, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    url = path.format(p=1, r=1, v=1, n=1, u=1, t=1, j=1)
    return client.request(method, url, json=body, headers=headers)


def _listing_status(client: httpx.Client, secret: str) -> int:
    """The status of the simplest read (listing projects) with this token."""
    return client.get("/api/v1/projects", headers=bearer(secret)).status_code


def _made(make_token: MakeToken, session: Session, *scopes: str, name: str) -> tuple[str, ApiToken]:
    """A new token's secret and its stored row."""
    secret = make_token(*scopes, name=name)
    return secret, session.scalars(select(ApiToken).where(ApiToken.name == name)).one()


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def test_the_endpoint_list_covers_every_documented_api_route(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1")
        for method in operations
    }
    names = {
        "{p}": "{project_id}",
        "{r}": "{round_id}",
        "{v}": "{version_id}",
        "{n}": "{number}",
        "{u}": "{user_id}",
        "{t}": "{task_id}",
        "{j}": "{judge_id}",
    }
    listed = set()
    for method, path, _, _ in ENDPOINTS:
        for short, name in names.items():
            path = path.replace(short, name)
        listed.add((method, path))
    assert served == listed


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=IDS)
def test_every_endpoint_is_401_without_a_token(
    client: httpx.Client, method: str, path: str, scope: str, body: object
) -> None:
    response = _call(client, method, path, body, {})
    assert response.status_code == 401
    assert _error_code(response) == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=IDS)
def test_every_endpoint_is_401_with_an_unknown_token(
    client: httpx.Client, method: str, path: str, scope: str, body: object
) -> None:
    response = _call(client, method, path, body, bearer("rl_not-a-real-token"))
    assert response.status_code == 401
    assert _error_code(response) == "invalid_token"


@pytest.mark.parametrize(
    ("method", "path", "scope", "body"), WRITES, ids=[f"{e[0]} {e[1]}" for e in WRITES]
)
def test_every_endpoint_is_403_with_a_token_lacking_its_scope(
    client: httpx.Client, make_token: MakeToken, method: str, path: str, scope: str, body: object
) -> None:
    # Every scope brings read, so only the write endpoints can lack theirs.
    others = [s for s in ("read", "write", "read:annotators") if s != scope]
    response = _call(client, method, path, body, bearer(make_token(*others)))
    assert response.status_code == 403
    assert _error_code(response) == "missing_scope"
    assert response.json()["error"]["details"] == {"required_scope": scope}


def test_read_annotators_brings_read_with_it(
    client: httpx.Client, db_session: Session, make_token: MakeToken
) -> None:
    secret, stored = _made(make_token, db_session, "read:annotators", name="names-only")
    assert _listing_status(client, secret) == 200
    assert stored.scopes == ["read", "read:annotators"]


@pytest.mark.parametrize(
    ("method", "path", "scope", "body"), READS, ids=[f"{e[0]} {e[1]}" for e in READS]
)
def test_a_write_token_reads_every_get_endpoint(
    client: httpx.Client, make_token: MakeToken, method: str, path: str, scope: str, body: object
) -> None:
    response = _call(client, method, path, body, bearer(make_token("write")))
    assert response.status_code != 403, response.text  # 404 for the missing ids, never 403


def test_write_brings_read_with_it_and_older_write_only_tokens_read_too(
    client: httpx.Client, db_session: Session, make_token: MakeToken
) -> None:
    secret, stored = _made(make_token, db_session, "write", name="writer")
    assert stored.scopes == ["read", "write"]
    stored.scopes = ["write"]  # as tokens made before write implied read were stored
    db_session.commit()
    assert _listing_status(client, secret) == 200


def test_a_read_only_token_cannot_write_and_nothing_changes(
    client: httpx.Client, db_session: Session, make_token: MakeToken, project: Project
) -> None:
    response = client.post(
        f"/api/v1/projects/{project.id}/prompts",
        json=[{"prompt": "A new prompt"}],
        headers=bearer(make_token("read", "read:annotators")),
    )
    assert response.status_code == 403
    assert db_session.scalars(select(Prompt).where(Prompt.project_id == project.id)).all() == []


def test_a_browser_session_does_not_authorise_the_api(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    csrf = login_new_user(client, db_session, "boss", Role.admin)
    assert client.get("/admin").status_code == 200  # the browser session works for pages
    assert client.get("/api/v1/projects").status_code == 401
    posted = client.post(
        f"/api/v1/projects/{project.id}/prompts",
        json=[{"prompt": "via cookie"}],
        headers={"X-CSRF-Token": csrf},
    )
    assert posted.status_code == 401


def test_a_token_is_stored_only_as_its_sha256(
    client: httpx.Client, db_session: Session, make_token: MakeToken
) -> None:
    secret, token = _made(make_token, db_session, "read", name="hashed")
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (token.token_hash, token.prefix)
    assert secret.startswith(token.prefix)
    assert _listing_status(client, secret) == 200


def test_a_revoked_token_is_refused(
    client: httpx.Client, db_session: Session, make_token: MakeToken
) -> None:
    from app.tokens import service

    secret, token = _made(make_token, db_session, "read", name="soon revoked")
    assert _listing_status(client, secret) == 200
    service.revoke_token(db_session, token_id=token.id)
    db_session.commit()
    response = client.get("/api/v1/projects", headers=bearer(secret))
    assert response.status_code == 401
    assert _error_code(response) == "invalid_token"


def test_a_token_stops_when_its_creator_is_no_longer_an_active_admin(
    client: httpx.Client, db_session: Session
) -> None:
    from app.tokens import service

    admin = make_user(db_session, role=Role.admin)
    secret = service.create_token(
        db_session, name="t", scopes=["read"], created_by_id=admin.id
    ).secret
    db_session.commit()
    assert _listing_status(client, secret) == 200
    admin.role = Role.annotator
    db_session.commit()
    assert _listing_status(client, secret) == 401


@pytest.mark.parametrize("loss", ["demoted", "deactivated"])
def test_losing_admin_revokes_the_creators_tokens_for_good(
    client: httpx.Client, db_session: Session, loss: str
) -> None:
    from app.admin import service as admin_service
    from app.tokens import service

    boss = make_user(db_session, role=Role.admin)
    admin = make_user(db_session, role=Role.admin)
    mine = service.create_token(db_session, name="mine", scopes=["read"], created_by_id=admin.id)
    other = service.create_token(db_session, name="other", scopes=["read"], created_by_id=boss.id)
    db_session.commit()
    assert _listing_status(client, mine.secret) == 200

    if loss == "demoted":
        admin_service.change_role(db_session, actor=boss, user_id=admin.id, role="annotator")
    else:
        admin_service.set_active(db_session, actor=boss, user_id=admin.id, active=False)
    db_session.commit()
    assert mine.token.revoked_at is not None
    assert _listing_status(client, mine.secret) == 401

    # Promoted (or reactivated) again: the token stays revoked.
    admin_service.change_role(db_session, actor=boss, user_id=admin.id, role="admin")
    admin_service.set_active(db_session, actor=boss, user_id=admin.id, active=True)
    db_session.commit()
    response = client.get("/api/v1/projects", headers=bearer(mine.secret))
    assert response.status_code == 401
    assert _error_code(response) == "invalid_token"
    # Another admin's token is untouched.
    assert other.token.revoked_at is None
    assert _listing_status(client, other.secret) == 200


def test_a_role_change_that_keeps_admin_revokes_nothing(
    client: httpx.Client, db_session: Session
) -> None:
    from app.accounts import service as accounts
    from app.tokens import service

    admin = make_user(db_session, role=Role.admin)
    issued = service.create_token(db_session, name="t", scopes=["read"], created_by_id=admin.id)
    accounts.set_role(db_session, user_id=admin.id, role="admin")
    accounts.set_active(db_session, user_id=admin.id, active=True)
    db_session.commit()
    assert issued.token.revoked_at is None
    assert _listing_status(client, issued.secret) == 200


def test_last_used_is_recorded_at_most_once_a_minute(
    client: httpx.Client, db_session: Session, make_token: MakeToken
) -> None:
    secret, token = _made(make_token, db_session, "read", name="used")
    assert token.last_used_at is None
    client.get("/api/v1/projects", headers=bearer(secret))
    db_session.refresh(token)
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/projects", headers=bearer(secret))
    db_session.refresh(token)
    assert token.last_used_at == first  # within the minute: no write
    token.last_used_at = utcnow() - timedelta(minutes=2)
    db_session.commit()
    client.get("/api/v1/projects", headers=bearer(secret))
    db_session.refresh(token)
    assert token.last_used_at > first - timedelta(seconds=1)
    assert utcnow() - token.last_used_at < timedelta(seconds=30)


def test_the_rate_limit_answers_429_with_retry_after(
    client: TestClient, make_token: MakeToken
) -> None:
    client.app.dependency_overrides[get_settings] = lambda: Settings(  # type: ignore[attr-defined]
        api_rate_limit_per_minute=3
    )
    secret, other = make_token("read"), make_token("read")
    statuses = [client.get("/api/v1/projects", headers=bearer(secret)) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["X-RateLimit-Remaining"] == "2"
    limited = statuses[-1]
    assert _error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # the window is per token
    assert _listing_status(client, other) == 200


def test_the_sliding_window_frees_requests_as_they_age() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(window=60, clock=lambda: now[0])
    assert limiter.hit(1, limit=2) == 1
    now[0] += 30
    assert limiter.hit(1, limit=2) == 0
    with pytest.raises(RateLimited) as refused:
        limiter.hit(1, limit=2)
    assert refused.value.retry_after == 30  # when the first request leaves the window
    now[0] += 30.5
    assert limiter.hit(1, limit=2) == 0  # the first one aged out, the second still counts
    with pytest.raises(RateLimited):
        limiter.hit(1, limit=2)
    assert limiter.hit(2, limit=2) == 1  # other keys have their own window
