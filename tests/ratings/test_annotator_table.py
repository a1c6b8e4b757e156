"""The leaderboard's annotator table (app.ratings.annotators and its routes): paging, sorting,
statuses, reliability rows seeded directly, the table's HTMX fragment, and exclusion from it.

Bounds, as chosen: a page past the end shows the last page; page 0, an unknown sort column or an
unknown order is a 422 that changes nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import AnnotatorExclusion, AnnotatorReliability, Project, User
from app.projects import service as projects
from app.ratings import annotators, service
from tests.admin.conftest import LoggedIn
from tests.factories import make_project, make_ranking, make_user
from tests.ratings import conftest as seeding

EVIDENCE = "agrees with the consensus on 12% of 64 pairs (95% interval 5–22%) over 8 tasks"


def seed_reliability(
    session: Session,
    project: Project,
    user: User,
    reliability: float,
    *,
    flag: str | None = None,
    evidence: str | None = None,
    weight: float | None = None,
    gold: tuple[int, int] = (0, 0),
) -> AnnotatorReliability:
    """A stored fit row, as the ratings job would write it (the table only reads them)."""
    row = AnnotatorReliability(
        project_id=project.id,
        user_id=user.id,
        reliability=reliability,
        lower=max(0.0, reliability - 0.1),
        upper=min(1.0, reliability + 0.1),
        comparisons=64,
        shared_tasks=8,
        gold_correct=gold[0],
        gold_answered=gold[1],
        weight=max(0.0, 2 * reliability - 1) if weight is None else weight,
        flag=flag,
        evidence=evidence,
        fitted_at=datetime(2026, 3, 2, 9, 15, tzinfo=UTC),
    )
    session.add(row)
    session.flush()
    return row


class Crowd:
    """Three annotators who prefer the trained version and a contrarian who prefers the base
    one, on 8 tasks ranked by all four; the contrarian's fit row says 'reversed'."""

    def __init__(self, session: Session) -> None:
        self.project = make_project(session, annotations_per_task=4)
        self.base, self.new = seeding.two_versions(session, self.project)
        self.agreeing = [make_user(session, username=f"agree-{i}") for i in range(3)]
        self.contrarian = make_user(session, username="contrarian")
        seeding.add_members(session, self.project, *self.agreeing, self.contrarian)
        for _ in range(8):
            task, samples = seeding.mixed_task(session, self.project, [self.base, self.new])
            for user in self.agreeing:
                make_ranking(session, task, user, seeding.prefer(self.new, self.base)(samples))
            make_ranking(
                session, task, self.contrarian, seeding.prefer(self.base, self.new)(samples)
            )
        service.recompute(session, project_id=self.project.id)
        # The job's own fit rows replaced by known ones (an exclusion refits and replaces them).
        session.execute(
            delete(AnnotatorReliability).where(AnnotatorReliability.project_id == self.project.id)
        )
        for user, value in zip(self.agreeing, (0.9, 0.8, 0.95), strict=True):
            seed_reliability(session, self.project, user, value, gold=(4, 5))
        seed_reliability(
            session, self.project, self.contrarian, 0.12, flag="reversed", evidence=EVIDENCE
        )
        session.commit()

    @property
    def table_url(self) -> str:
        return f"/admin/projects/{self.project.id}/annotators"


@pytest.fixture
def crowd(db_session: Session) -> Crowd:
    return Crowd(db_session)


def many_members(session: Session, n: int) -> Project:
    """A project with `n` members named member-00 … (no rankings), committed."""
    project = make_project(session)
    users = [make_user(session, username=f"member-{i:02d}") for i in range(n)]
    seeding.add_members(session, project, *users)
    session.commit()
    return project


def names(table: annotators.AnnotatorTable) -> list[str]:
    return [row.username for row in table.rows]


def _row(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</tr>", start)]


# Paging and sorting (service)


def test_pages_split_the_annotators_without_repeats_and_a_late_page_shows_the_last(
    db_session: Session,
) -> None:
    project = many_members(db_session, 30)

    first = annotators.annotator_table(db_session, project_id=project.id, page=1)
    second = annotators.annotator_table(db_session, project_id=project.id, page=2)
    beyond = annotators.annotator_table(db_session, project_id=project.id, page=9)

    assert (first.total, first.pages, len(first.rows), len(second.rows)) == (30, 2, 25, 5)
    assert names(first) + names(second) == [f"member-{i:02d}" for i in range(30)]
    assert (first.first, first.last, second.first, second.last) == (1, 25, 26, 30)
    assert beyond.page == 2
    assert names(beyond) == names(second)


def test_an_empty_project_has_one_empty_page(db_session: Session) -> None:
    project = make_project(db_session)

    table = annotators.annotator_table(db_session, project_id=project.id, page=3)

    assert (table.total, table.page, table.pages, table.rows) == (0, 1, 1, [])
    assert (table.first, table.last) == (0, 0)


@pytest.mark.parametrize(
    ("sort", "order"), [("nonsense", None), ("name", "sideways"), ("name; DROP", "asc")]
)
def test_an_unknown_sort_or_order_is_invalid(db_session: Session, sort: str, order: str) -> None:
    project = many_members(db_session, 2)

    with pytest.raises(InvalidInput):
        annotators.annotator_table(db_session, project_id=project.id, sort=sort, order=order)


def test_sorting_by_reliability_weight_gold_and_flag_puts_unfitted_annotators_last(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    users = {
        name: make_user(db_session, username=name) for name in ("ann-a", "ann-b", "ann-c", "ann-d")
    }
    seeding.add_members(db_session, project, *users.values())
    seed_reliability(db_session, project, users["ann-a"], 0.9, gold=(9, 10), weight=0.8)
    seed_reliability(
        db_session, project, users["ann-b"], 0.5, flag="chance", gold=(1, 2), weight=0.5
    )
    seed_reliability(db_session, project, users["ann-c"], 0.1, flag="reversed", weight=0.0)

    pid = project.id

    def order_of(sort: str, order: str) -> str:
        table = annotators.annotator_table(db_session, project_id=pid, sort=sort, order=order)
        return "".join(name[-1] for name in names(table))

    assert order_of("reliability", "asc") == "cbad"
    assert order_of("reliability", "desc") == "abcd"
    assert order_of("weight", "asc") == "cbad"
    assert order_of("gold", "desc") == "abcd"  # c has no gold answers
    assert order_of("flag", "desc") == "cbad"
    assert order_of("flag", "asc") == "abcd"


def test_sorting_by_counts_and_agreement_uses_the_rankings(
    db_session: Session, crowd: Crowd
) -> None:
    late = make_user(db_session, username="late")  # a member who has not ranked yet
    seeding.add_members(db_session, crowd.project, late)
    pid = crowd.project.id

    by_agreement = annotators.annotator_table(db_session, project_id=pid, sort="agreement")
    by_rankings = annotators.annotator_table(db_session, project_id=pid, sort="rankings")
    paged = annotators.annotator_table(
        db_session, project_id=pid, sort="agreement", order="desc", page=2, page_size=2
    )

    assert by_agreement.order == "asc"  # the column's default: least agreeing first
    assert names(by_agreement)[0] == "contrarian"
    assert names(by_agreement)[-1] == "late"  # no value: last
    assert [r.rankings for r in by_rankings.rows] == [8, 8, 8, 8, 0]
    assert names(by_rankings)[-1] == "late"
    assert names(paged) == ["agree-2", "contrarian"]  # the agreeing ones tie: by name


def test_agreement_and_shared_tasks_match_the_agreement_report(
    db_session: Session, crowd: Crowd
) -> None:
    """The table computes them for its page only; they must equal the whole-project report,
    for an excluded annotator too."""
    service.set_excluded(
        db_session, project_id=crowd.project.id, user_id=crowd.agreeing[0].id, excluded=True
    )
    report = {
        a.user_id: a
        for a in service.agreement_report(db_session, project_id=crowd.project.id).annotators
    }

    for page in (1, 2, 3, 4):
        table = annotators.annotator_table(
            db_session, project_id=crowd.project.id, page=page, page_size=1, sort="rankings"
        )
        (row,) = table.rows
        expected = report[row.user_id]
        assert row.shared_tasks == expected.shared_tasks
        assert row.agreement == pytest.approx(expected.agreement)
        assert row.outlier == expected.outlier
    assert report[crowd.contrarian.id].outlier  # the outlier test is exercised, not vacuous


def test_statuses_distinguish_members_former_members_and_excluded(
    db_session: Session, crowd: Crowd
) -> None:
    gone, excluded = crowd.agreeing[1], crowd.agreeing[2]
    projects.remove_member(db_session, project_id=crowd.project.id, user_id=gone.id)
    service.set_excluded(
        db_session, project_id=crowd.project.id, user_id=excluded.id, excluded=True, reason="why"
    )

    table = annotators.annotator_table(db_session, project_id=crowd.project.id)

    rows = {row.user_id: row for row in table.rows}
    assert rows[crowd.agreeing[0].id].status == "member"
    assert rows[gone.id].status == "former member"
    assert (rows[excluded.id].status, rows[excluded.id].exclusion_reason) == ("excluded", "why")


def test_the_flagged_count_leaves_out_excluded_annotators(
    db_session: Session, crowd: Crowd
) -> None:
    before = annotators.annotator_table(db_session, project_id=crowd.project.id).flagged
    # Stored as set_excluded would, without its refit (which would replace the seeded rows).
    db_session.add(AnnotatorExclusion(project_id=crowd.project.id, user_id=crowd.contrarian.id))
    db_session.flush()

    after = annotators.annotator_table(db_session, project_id=crowd.project.id)

    assert (before, after.flagged) == (1, 0)
    (row,) = [r for r in after.rows if r.user_id == crowd.contrarian.id]
    assert (row.status, row.flag) == ("excluded", "reversed")


@given(answered=st.integers(1, 500), data=st.data())
def test_the_wilson_interval_contains_the_proportion_and_stays_in_0_1(
    answered: int, data: st.DataObject
) -> None:
    correct = data.draw(st.integers(0, answered))

    low, high = annotators.wilson_interval(correct, answered)

    assert 0.0 <= low <= correct / answered <= high <= 1.0
    assert high - low > 0


def test_the_wilson_interval_of_a_known_case() -> None:
    low, high = annotators.wilson_interval(0, 10)

    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)


# The page and its fragment (HTTP)


def test_the_fragment_is_the_table_alone_at_the_asked_page_and_sort(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = many_members(db_session, 30)
    url = f"/admin/projects/{project.id}/annotators?page=2&sort=name&order=desc"

    response = client.get(url, headers=admin.htmx)

    assert response.status_code == 200
    html = response.text
    assert html.lstrip().startswith('<div id="annotator-table"')
    assert "<html" not in html
    assert 'data-page="2"' in html
    assert 'data-order="desc"' in html
    shown = re.findall(r"<span class=\"muted\">(member-\d\d)</span>", html)
    assert shown == [f"member-{i:02d}" for i in range(4, -1, -1)]
    assert "Annotators 26–30 of 30 · page 2 of 2" in html


def test_without_htmx_the_table_link_renders_the_whole_page_at_that_page(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = many_members(db_session, 30)

    response = client.get(f"/admin/projects/{project.id}/annotators?page=2")
    leaderboard = client.get(f"/admin/projects/{project.id}/leaderboard?page=2")

    for page in (response, leaderboard):
        assert page.status_code == 200
        assert "<html" in page.text
        assert 'id="leaderboard"' in page.text
        assert 'data-page="2"' in page.text
        assert "member-29" in page.text
        assert "member-00" not in page.text
    first = client.get(f"/admin/projects/{project.id}/leaderboard").text
    assert 'rel="next"' in first
    assert f'href="/admin/projects/{project.id}/annotators?page=2&amp;sort=name&amp;order=asc"' in (
        first
    )


@pytest.mark.parametrize("query", ["sort=password", "order=up", "page=0", "page=abc", "page=-1"])
def test_a_bad_table_query_is_a_422(
    client: httpx.Client, admin: LoggedIn, db_session: Session, query: str
) -> None:
    project = many_members(db_session, 3)

    response = client.get(f"/admin/projects/{project.id}/annotators?{query}", headers=admin.htmx)

    assert response.status_code == 422


def test_before_any_fit_the_reliability_columns_say_not_fitted_yet(
    client: httpx.Client, admin: LoggedIn, db_session: Session
) -> None:
    project = many_members(db_session, 2)

    html = client.get(f"/admin/projects/{project.id}/annotators", headers=admin.htmx).text

    assert 'id="reliability-not-fitted"' in html
    assert html.count("not fitted yet</td>") == 2


def test_a_flagged_row_shows_its_evidence_and_an_exclude_prefilled_with_it(
    client: httpx.Client, admin: LoggedIn, crowd: Crowd
) -> None:
    html = client.get(crowd.table_url, headers=admin.htmx).text

    flagged = _row(html, f"annotator-{crowd.contrarian.id}")
    assert 'data-flag="reversed"' in flagged
    assert "0.12 <span" in flagged
    assert "(0.02–0.22)" in flagged
    assert EVIDENCE in flagged
    assert f'value="Flagged reversed: {EVIDENCE}"' in flagged
    assert 'class="danger"' in flagged
    good = _row(html, f"annotator-{crowd.agreeing[0].id}")
    assert 'data-flag=""' in good
    assert 'value=""' in good
    assert "4/5 <span" in good  # gold accuracy with its interval
    assert 'id="flagged-count"' in html


def test_excluding_from_the_table_keeps_its_page_and_sort_and_changes_the_ratings(
    client: httpx.Client, admin: LoggedIn, crowd: Crowd, db_session: Session
) -> None:
    before = service.leaderboard(db_session, project_id=crowd.project.id).versions[0]
    url = f"/admin/projects/{crowd.project.id}/annotators/{crowd.contrarian.id}/exclude"
    form = {"reason": "Flagged reversed", "page": "2", "sort": "reliability", "order": "desc"}

    response = client.post(url, data=form, headers=admin.htmx)

    assert response.status_code == 200
    html = response.text
    assert html.lstrip().startswith('<div id="ratings">')
    assert 'data-page="1"' in html  # page 2 of a one-page table is clamped…
    assert 'data-sort="reliability" data-order="desc"' in html  # …but the sort is kept
    assert 'data-status="excluded"' in _row(html, f"annotator-{crowd.contrarian.id}")
    assert "/include" in _row(html, f"annotator-{crowd.contrarian.id}")
    after = service.leaderboard(db_session, project_id=crowd.project.id).versions[0]
    assert (before.win_rate_vs_previous, after.win_rate_vs_previous) == (
        pytest.approx(0.75),
        pytest.approx(1.0),
    )
    assert after.comparisons < before.comparisons

    back = client.post(
        f"/admin/projects/{crowd.project.id}/annotators/{crowd.contrarian.id}/include",
        data={"page": "1", "sort": "flag", "order": "desc"},
        headers=admin.htmx,
    )

    assert back.status_code == 200
    assert 'data-status="member"' in _row(back.text, f"annotator-{crowd.contrarian.id}")
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (crowd.project.id, crowd.contrarian.id)) is None


def test_a_bad_sort_in_the_exclusion_form_is_refused_and_changes_nothing(
    client: httpx.Client, admin: LoggedIn, crowd: Crowd, db_session: Session
) -> None:
    url = f"/admin/projects/{crowd.project.id}/annotators/{crowd.contrarian.id}/exclude"

    response = client.post(url, data={"sort": "bogus"}, headers=admin.htmx)

    assert response.status_code == 422
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (crowd.project.id, crowd.contrarian.id)) is None


def test_including_without_csrf_token_is_refused_and_changes_nothing(
    client: httpx.Client, admin: LoggedIn, crowd: Crowd, db_session: Session
) -> None:
    service.set_excluded(
        db_session, project_id=crowd.project.id, user_id=crowd.contrarian.id, excluded=True
    )
    db_session.commit()
    url = f"/admin/projects/{crowd.project.id}/annotators/{crowd.contrarian.id}/include"

    response = client.post(url, data={"page": "1"})

    assert response.status_code == 403
    db_session.expire_all()
    assert db_session.get(AnnotatorExclusion, (crowd.project.id, crowd.contrarian.id))


def test_a_former_member_can_be_excluded_from_the_table(
    client: httpx.Client, admin: LoggedIn, crowd: Crowd, db_session: Session
) -> None:
    gone = crowd.agreeing[0]
    projects.remove_member(db_session, project_id=crowd.project.id, user_id=gone.id)
    db_session.commit()
    html = client.get(crowd.table_url, headers=admin.htmx).text
    assert 'data-status="former member"' in _row(html, f"annotator-{gone.id}")

    response = client.post(
        f"/admin/projects/{crowd.project.id}/annotators/{gone.id}/exclude", headers=admin.htmx
    )

    assert response.status_code == 200
    assert "(former member)" in _row(response.text, f"annotator-{gone.id}")


def test_the_table_is_for_admins_only(
    client: httpx.Client, crowd: Crowd, db_session: Session
) -> None:
    from app.models import Role
    from tests.helpers import login

    make_user(db_session, username="annotator-only", role=Role.annotator)
    db_session.commit()
    login(client, "annotator-only")

    assert client.get(crowd.table_url).status_code == 403
