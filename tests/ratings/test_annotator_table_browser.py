"""The leaderboard's annotator table in a real Chromium: paging and sorting through HTMX (and
plain links with JavaScript off), and the one-click exclusion of a flagged annotator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.models import AnnotatorExclusion, AnnotatorReliability, Role
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_user
from tests.helpers import BROWSER_MARKS, CHROMIUM, log_in_on_page
from tests.ratings import conftest as seeding

pytestmark = BROWSER_MARKS
EVIDENCE = "agrees with the consensus on 9% of 120 pairs (95% interval 4–16%) over 30 tasks"


@dataclass(frozen=True)
class Seeded:
    project_id: int
    flagged_id: int

    def url(self, server: LiveServer) -> str:
        return f"{server.url}/admin/projects/{self.project_id}/leaderboard"


@pytest.fixture(scope="module")
def seeded(fresh_database: FreshDatabase) -> Seeded:
    """30 members (member-00 … member-29, two pages), member-27 flagged 'reversed' by a
    stored fit row; committed."""
    with fresh_database.session() as session:
        make_user(session, username="table-admin", role=Role.admin)
        project = make_project(session, name="Annotator table")
        users = [make_user(session, username=f"member-{i:02d}") for i in range(30)]
        seeding.add_members(session, project, *users)
        flagged = users[27]
        session.add(
            AnnotatorReliability(
                project_id=project.id,
                user_id=flagged.id,
                reliability=0.09,
                lower=0.04,
                upper=0.16,
                comparisons=120,
                shared_tasks=30,
                weight=0.0,
                flag="reversed",
                evidence=EVIDENCE,
            )
        )
        session.commit()
        return Seeded(project.id, flagged.id)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def shown(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#annotators tbody tr td:first-child span.muted", "spans => spans.map(s => s.textContent)"
    )


def test_paging_and_sorting_swap_the_table_and_keep_the_url(
    browser: Any, live_server: LiveServer, seeded: Seeded
) -> None:
    page = browser.new_page()
    log_in_on_page(page, live_server.url, "table-admin")
    page.goto(seeded.url(live_server))
    assert shown(page)[:2] == ["member-00", "member-01"]
    assert len(shown(page)) == 25

    page.click("#annotator-table nav.pager >> text=Next ›")
    page.wait_for_selector('#annotator-table[data-page="2"]')

    assert shown(page) == [f"member-{i}" for i in range(25, 30)]
    assert "page=2" in page.url
    assert page.is_visible("#leaderboard")  # the rest of the page stays

    page.click('#annotators th[data-sort="flag"] a')
    page.wait_for_selector('#annotator-table[data-sort="flag"]')

    assert page.get_attribute("#annotator-table", "data-page") == "1"
    first = page.locator("#annotators tbody tr").first
    assert first.get_attribute("id") == f"annotator-{seeded.flagged_id}"
    assert EVIDENCE in first.inner_text()

    page.go_back()
    page.wait_for_selector('#annotator-table[data-page="2"]')
    assert shown(page)[0] == "member-25"


def test_the_pages_work_without_javascript(
    browser: Any, live_server: LiveServer, seeded: Seeded
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in_on_page(page, live_server.url, "table-admin")
    page.goto(seeded.url(live_server))

    page.click("#annotator-table nav.pager >> text=Last »")
    page.wait_for_url("**/annotators?page=2**")

    assert shown(page)[0] == "member-25"
    assert page.is_visible("#leaderboard")
    context.close()


def test_a_flagged_annotator_is_excluded_in_one_click_and_included_again(
    browser: Any, live_server: LiveServer, seeded: Seeded, fresh_database: FreshDatabase
) -> None:
    page = browser.new_page()
    log_in_on_page(page, live_server.url, "table-admin")
    page.goto(seeded.url(live_server) + "?page=2")  # by name: the exclusion's refit may drop
    row = f"#annotator-{seeded.flagged_id}"  # the seeded flag, and with it the flag order
    assert page.input_value(f"{row} input[name=reason]") == f"Flagged reversed: {EVIDENCE}"

    page.click(f"{row} button:has-text('Exclude')")
    page.wait_for_selector(f'{row}[data-status="excluded"]')

    assert "Annotator excluded" in page.inner_text("#leaderboard")
    assert page.get_attribute("#annotator-table", "data-page") == "2"
    with fresh_database.session() as session:
        exclusion = session.get(AnnotatorExclusion, (seeded.project_id, seeded.flagged_id))
        assert exclusion is not None
        assert exclusion.reason == f"Flagged reversed: {EVIDENCE}"

    page.click(f"{row} button:has-text('Include again')")
    page.wait_for_selector(f'{row}[data-status="member"]')

    with fresh_database.session() as session:
        assert session.get(AnnotatorExclusion, (seeded.project_id, seeded.flagged_id)) is None
