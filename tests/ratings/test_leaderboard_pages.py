"""The admin leaderboard page (with its exclusion forms) and the leaderboard JSON, over real
HTTP on a seeded project."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import (
    AnnotatorExclusion,
    PolicyKind,
    PolicyVersion,
    Project,
    Role,
    User,
)
from app.ratings import service
from tests.admin.conftest import LoggedIn
from tests.api.conftest import bearer
from tests.factories import make_project, make_ranking, make_user
from tests.helpers import login
from tests.ratings import conftest as seeding


class Seeded:
    def __init__(self, db_session: Session) -> None:
        self.project: Project = make_project(db_session, annotations_per_task=4)
        self.base, self.new = seeding.two_versions(db_session, self.project)
        self.agreeing: list[User] = [make_user(db_session) for _ in range(3)]
        self.contrarian: User = make_user(db_session, username="contrarian")
        seeding.add_members(db_session, self.project, *self.agreeing, self.contrarian)
        for _ in range(8):
            task, samples = seeding.mixed_task(db_session, self.project, [self.base, self.new])
            for user in self.agreeing:
                make_ranking(db_session, task, user, seeding.prefer(self.new, self.base)(samples))
            make_ranking(
                db_session, task, self.contrarian, seeding.prefer(self.base, self.new)(samples)
            )
        service.recompute(db_session, project_id=self.project.id)
        db_session.commit()

    @property
    def url(self) -> str:
        return f"/admin/projects/{self.project.id}/leaderboard"


@pytest.fixture
def seeded(db_session: Session) -> Seeded:
    return Seeded(db_session)


def _row(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</tr>", start)]


def test_the_page_ranks_versions_and_flags_the_contrarian(
    client: httpx.Client, admin: LoggedIn, seeded: Seeded
) -> None:
    page = client.get(seeded.url)

    assert page.status_code == 200
    html = page.text
    assert html.index(f'id="version-{seeded.new.id}"') < html.index(
        f'id="version-{seeded.base.id}"'
    )
    assert 'data-verdict="better"' in _row(html, f"version-{seeded.new.id}")
    assert "outlier" in _row(html, f"annotator-{seeded.contrarian.id}")
    assert "<strong>outlier" not in _row(html, f"annotator-{seeded.agreeing[0].id}")
    assert f'/annotators/{seeded.contrarian.id}/exclude"' in html
    assert 'id="consensus"' in html
    project_page = client.get(f"/admin/projects/{seeded.project.id}")
    assert f'href="{seeded.url}"' in project_page.text


def test_excluding_and_including_from_the_page_changes_the_counts(
    client: httpx.Client, admin: LoggedIn, seeded: Seeded, db_session: Session
) -> None:
    base = f"/admin/projects/{seeded.project.id}/annotators/{seeded.contrarian.id}"
    counts = 'class="num comparisons">'

    excluded = client.post(f"{base}/exclude", data={"reason": "outlier"}, headers=admin.htmx)

    assert excluded.status_code == 200
    assert excluded.text.lstrip().startswith('<div id="ratings">')  # the HTMX fragment
    assert 'id="consensus"' in excluded.text  # refreshed with the ratings, not left stale
    assert f"{counts}{3 * 8 * 4}<" in excluded.text
    assert "excluded" in _row(excluded.text, f"annotator-{seeded.contrarian.id}")
    exclusion = db_session.get_one(AnnotatorExclusion, (seeded.project.id, seeded.contrarian.id))
    db_session.refresh(exclusion)
    assert (exclusion.reason, exclusion.excluded_by_id) == ("outlier", admin.user.id)

    included = client.post(f"{base}/include", headers=admin.headers)

    assert included.status_code == 200
    assert f"{counts}{4 * 8 * 4}<" in included.text
    assert "<html" in included.text  # a plain form post gets the whole page


def test_a_project_with_one_version_shows_when_its_sample_fit_was_computed(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    from tests.factories import base_version

    project = make_project(db_session)
    base = base_version(db_session, project)
    user = make_user(db_session)
    seeding.add_members(db_session, project, user)
    for _ in range(3):
        task, samples = seeding.mixed_task(db_session, project, [base], per_version=3)
        make_ranking(db_session, task, user, [[sid] for sid in samples[base.id]])
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/leaderboard/recompute", headers=admin.htmx
    )

    assert "Recomputed from 9 comparisons" in response.text
    assert "Not computed yet" not in response.text
    assert service.leaderboard(db_session, project_id=project.id).computed_at is not None


def test_exclusion_without_csrf_token_is_refused_and_changes_nothing(
    client: httpx.Client, admin: LoggedIn, seeded: Seeded, db_session: Session
) -> None:
    path = f"/admin/projects/{seeded.project.id}/annotators/{seeded.contrarian.id}/exclude"

    response = client.post(path, data={"reason": "x"})

    assert response.status_code == 403
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (seeded.project.id, seeded.contrarian.id)) is None


def test_excluding_a_non_member_is_not_found(
    client: httpx.Client, admin: LoggedIn, seeded: Seeded
) -> None:
    path = f"/admin/projects/{seeded.project.id}/annotators/{admin.user.id}/exclude"

    assert client.post(path, headers=admin.htmx).status_code == 404


def test_recompute_now_picks_up_new_rankings(
    client: httpx.Client, admin: LoggedIn, seeded: Seeded, db_session: Session
) -> None:
    seeding.seed_rankings(
        db_session,
        seeded.project,
        [seeded.base, seeded.new],
        [seeded.agreeing[0]],
        tasks=2,
        rank=seeding.mostly(seeded.new, seeded.base),
    )
    db_session.commit()

    response = client.post(f"{seeded.url}/recompute", headers=admin.htmx)

    assert response.status_code == 200
    assert "Recomputed from" in response.text
    assert f'class="num comparisons">{(4 * 8 + 2) * 4}<' in response.text


def test_the_page_is_for_admins_only(
    client: httpx.Client, seeded: Seeded, db_session: Session
) -> None:
    make_user(db_session, username="annotator-only", role=Role.annotator)
    db_session.commit()
    login(client, "annotator-only")

    assert client.get(seeded.url).status_code == 403


def test_the_page_of_an_unknown_project_is_not_found(client: httpx.Client, admin: LoggedIn) -> None:
    assert client.get("/admin/projects/999999/leaderboard").status_code == 404


# JSON


def test_the_json_leaderboard_lists_versions_best_first(
    client: httpx.Client,
    make_token,
    seeded: Seeded,
    db_session: Session,  # type: ignore[no-untyped-def]
) -> None:
    unrated = PolicyVersion(
        project_id=seeded.project.id, number=3, name="unused", kind=PolicyKind.external
    )
    db_session.add(unrated)
    db_session.commit()

    response = client.get(
        f"/api/v1/projects/{seeded.project.id}/leaderboard", headers=bearer(make_token("read"))
    )

    assert response.status_code == 200
    body = response.json()
    assert body["project_id"] == seeded.project.id
    assert body["computed_at"] is not None
    assert body["recompute_pending"] is False
    assert [v["id"] for v in body["versions"]] == [seeded.new.id, seeded.base.id, unrated.id]
    top = body["versions"][0]
    assert top["ci_low"] <= top["rating"] <= top["ci_high"]
    assert top["comparisons"] == 4 * 8 * 4
    assert top["win_rate_vs_previous"] == pytest.approx(0.75)  # 3 of 4 annotators agree
    assert (top["previous_version_id"], top["verdict"]) == (seeded.base.id, "better")
    assert body["versions"][2]["rating"] is None


def test_the_json_leaderboard_needs_a_token_and_a_known_project(
    client: httpx.Client,
    make_token,  # type: ignore[no-untyped-def]
) -> None:
    missing = client.get("/api/v1/projects/1/leaderboard")
    unknown = client.get("/api/v1/projects/999999/leaderboard", headers=bearer(make_token("read")))

    assert missing.status_code == 401
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
