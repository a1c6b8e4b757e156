"""The annotator table's JSON API: GET /api/v1/projects/{id}/annotators (paged by cursor,
sorted, `read:annotators` scope) and POST/DELETE .../annotators/{user_id}/exclusion (`write`)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import AnnotatorExclusion
from app.ratings import service
from app.ratings.annotator_schemas import ANNOTATOR_PAGE_EXAMPLE, AnnotatorPage
from tests.api.conftest import bearer
from tests.ratings.test_annotator_table import EVIDENCE, Crowd, crowd  # noqa: F401


def test_the_pages_walk_every_annotator_once_in_the_asked_order(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
    crowd: Crowd,  # noqa: F811
) -> None:
    headers = bearer(make_token("read:annotators"))
    url = f"/api/v1/projects/{crowd.project.id}/annotators"
    seen: list[str] = []
    cursor = None

    for _ in range(5):
        params: dict[str, str | int] = {"limit": 3, "sort": "reliability", "order": "desc"}
        if cursor:
            params["cursor"] = cursor
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert body["total"] == 4
        seen += [item["username"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == ["agree-2", "agree-0", "agree-1", "contrarian"]  # 0.95, 0.9, 0.8, 0.12


def test_a_flagged_annotator_carries_the_fit_the_evidence_and_the_gold_interval(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
    crowd: Crowd,  # noqa: F811
) -> None:
    response = client.get(
        f"/api/v1/projects/{crowd.project.id}/annotators",
        params={"sort": "flag"},
        headers=bearer(make_token("read:annotators")),
    )

    first, second = response.json()["items"][:2]
    assert first["username"] == "contrarian"
    assert first["status"] == "member"
    assert first["reliability"]["flag"] == "reversed"
    assert first["reliability"]["evidence"] == EVIDENCE
    assert first["reliability"]["gold"] is None
    assert first["agreement"] < second["agreement"]
    gold = second["reliability"]["gold"]
    assert (gold["correct"], gold["answered"]) == (4, 5)
    assert gold["lower"] < 0.8 < gold["upper"]


def test_listing_needs_the_annotators_scope_and_a_known_sort(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
    crowd: Crowd,  # noqa: F811
) -> None:
    url = f"/api/v1/projects/{crowd.project.id}/annotators"

    allowed = bearer(make_token("read:annotators"))

    read_only = client.get(url, headers=bearer(make_token("read")))
    bad_sort = client.get(url, params={"sort": "password"}, headers=allowed)
    bad_order = client.get(url, params={"order": "up"}, headers=allowed)
    unknown = client.get("/api/v1/projects/999999/annotators", headers=allowed)

    assert read_only.status_code == 403
    assert (bad_sort.status_code, bad_order.status_code) == (422, 422)
    assert unknown.status_code == 404


def test_excluding_and_including_through_the_api_changes_the_ratings(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
    crowd: Crowd,  # noqa: F811
    db_session: Session,
) -> None:
    headers = bearer(make_token("write"))
    url = f"/api/v1/projects/{crowd.project.id}/annotators/{crowd.contrarian.id}/exclusion"

    excluded = client.post(url, json={"reason": "Flagged reversed"}, headers=headers)

    assert excluded.status_code == 200
    assert excluded.json()["reason"] == "Flagged reversed"
    assert excluded.json()["excluded_by_id"] is not None
    top = service.leaderboard(db_session, project_id=crowd.project.id).versions[0]
    assert top.win_rate_vs_previous == pytest.approx(1.0)

    included = client.delete(url, headers=headers)
    again = client.delete(url, headers=headers)

    assert (included.status_code, again.status_code) == (204, 204)
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (crowd.project.id, crowd.contrarian.id)) is None
    top = service.leaderboard(db_session, project_id=crowd.project.id).versions[0]
    assert top.win_rate_vs_previous == pytest.approx(0.75)


def test_excluding_needs_the_write_scope_and_an_annotator(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
    crowd: Crowd,  # noqa: F811
    db_session: Session,
) -> None:
    base = f"/api/v1/projects/{crowd.project.id}/annotators"

    refused = client.post(
        f"{base}/{crowd.contrarian.id}/exclusion", headers=bearer(make_token("read:annotators"))
    )
    not_annotator = client.post(f"{base}/999999/exclusion", headers=bearer(make_token("write")))
    too_long = client.post(
        f"{base}/{crowd.contrarian.id}/exclusion",
        json={"reason": "x" * 501},
        headers=bearer(make_token("write")),
    )

    assert refused.status_code == 403
    assert not_annotator.status_code == 404
    assert too_long.status_code == 422
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (crowd.project.id, crowd.contrarian.id)) is None


def test_the_documented_example_is_a_valid_page() -> None:
    page = AnnotatorPage.model_validate(ANNOTATOR_PAGE_EXAMPLE)

    assert page.items[0].reliability is not None
    assert page.items[0].reliability.flag == "reversed"
