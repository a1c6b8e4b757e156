"""Admin pages in Chromium: HTMX swaps errors into #flash and file uploads go through.

These catch what HTTP tests cannot: htmx 2 ignores 4xx responses unless base.html configures
it to swap them, and a multipart upload over HTMX must still carry the CSRF header.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Project, ProjectMember, Role
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_user
from tests.helpers import log_in_on_page

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def project_id(fresh_database: FreshDatabase) -> int:
    with fresh_database.session() as session:
        make_user(session, username="browser-admin", role=Role.admin)
        project = make_project(session, name="Browser project", samples_per_prompt=4)
        session.commit()
        return project.id


@pytest.fixture
def page(live_server: LiveServer, project_id: int) -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        log_in_on_page(page, live_server.url, "browser-admin")
        yield page
        browser.close()


def test_a_bad_setting_shows_in_flash_and_a_good_one_clears_it(
    page: Any, live_server: LiveServer, fresh_database: FreshDatabase, project_id: int
) -> None:
    page.goto(f"{live_server.url}/admin/projects/{project_id}")
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")

    page.fill("#settings input[name=samples_per_prompt]", "12")
    page.click("#settings button[type=submit]")
    page.wait_for_selector("#flash .error", timeout=5000)
    assert page.inner_text("#flash") == "Samples per prompt must be between 4 and 9"
    with fresh_database.session() as session:
        assert session.get(Project, project_id).samples_per_prompt == 4  # type: ignore[union-attr]

    page.fill("#settings input[name=samples_per_prompt]", "6")
    page.click("#settings button[type=submit]")
    page.wait_for_selector("#settings .notice")
    assert not page.is_visible("#flash")


def test_prompts_are_uploaded_previewed_and_imported(
    page: Any, live_server: LiveServer, tmp_path: Path, project_id: int
) -> None:
    upload = tmp_path / "dolly.jsonl"
    lines = [
        {"instruction": "Name a fish", "context": "", "response": "Tope", "category": "qa"},
        {"instruction": "", "context": "", "response": "", "category": "qa"},
    ]
    upload.write_text("\n".join(json.dumps(x) for x in lines))
    page.goto(f"{live_server.url}/admin/projects/{project_id}/prompts/import")

    page.set_input_files("input[type=file]", str(upload))
    page.click("form.grid-form button[type=submit]")
    page.wait_for_selector("#import-counts")
    assert page.inner_text("[data-count=new]") == "1"
    assert "'instruction' is empty" in page.inner_text("#import-errors")

    page.click("#import-preview button[type=submit]")
    page.wait_for_selector("#import-outcome")
    assert "Imported 1 prompt" in page.inner_text("#import-outcome")


def test_scope_checkboxes_sit_on_their_labels_line(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/admin/tokens")

    boxes = page.locator("input[name=scopes]")
    assert boxes.count() >= 3
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        name = boxes.nth(i).locator("xpath=..").locator("code").bounding_box()
        assert box["x"] + box["width"] <= name["x"]  # left of its scope name
        assert box["y"] < name["y"] + name["height"]  # on the same line, not above it
        assert name["y"] < box["y"] + box["height"]


def test_search_boxes_show_their_whole_placeholder(
    page: Any, live_server: LiveServer, fresh_database: FreshDatabase, project_id: int
) -> None:
    with fresh_database.session() as session:
        project = session.get(Project, project_id)
        member = make_user(session, username="searchable-member")
        session.add(ProjectMember(project_id=project_id, user_id=member.id))
        session.commit()
        assert project is not None
    for url in (f"/admin/projects/{project_id}", "/admin/users"):
        page.goto(live_server.url + url)
        search = page.locator("input[type=search]")
        assert search.get_attribute("placeholder") == "Find by username or name"
        room, needed = search.evaluate(
            """i => { const s = getComputedStyle(i);
                      const c = document.createElement('canvas').getContext('2d');
                      c.font = s.font;
                      const pad = parseFloat(s.paddingLeft) + parseFloat(s.paddingRight);
                      return [i.clientWidth - pad, c.measureText(i.placeholder).width]; }"""
        )
        assert needed <= room, url


def test_links_among_buttons_look_like_buttons(
    page: Any, live_server: LiveServer, project_id: int
) -> None:
    for url in ("/admin", f"/admin/projects/{project_id}"):
        page.goto(live_server.url + url)
        links = page.locator(".actions a")
        assert links.count() > 0, url
        for i in range(links.count()):
            style = links.nth(i).evaluate(
                "a => [getComputedStyle(a).textDecorationLine, getComputedStyle(a).borderTopStyle]"
            )
            assert style == ["none", "solid"], (url, links.nth(i).inner_text())
