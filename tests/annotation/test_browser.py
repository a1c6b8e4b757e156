"""The ranking page in a real Chromium (Playwright driving Debian's chromium package)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import combinations
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Assignment, Comparison, Project, Ranking, RankingTask
from tests.annotation.conftest import make_conversation, make_member
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_prompt, make_task, task_sample_ids
from tests.helpers import BROWSER_MARKS, CHROMIUM, log_in_on_page

pytestmark = BROWSER_MARKS
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Seeded:
    username: str
    task_ids: list[int]
    samples: list[int]  # of the first task, by position


def seed(
    database: FreshDatabase,
    username: str,
    make_tasks: Callable[[Session, Project], list[RankingTask]],
    **project_overrides: Any,
) -> Seeded:
    """A project with 4 samples a prompt, the tasks `make_tasks` makes in it and a member who
    works on it; committed."""
    with database.session() as session:
        project = make_project(session, **{"samples_per_prompt": 4, **project_overrides})
        tasks = make_tasks(session, project)
        user = make_member(session, project, username=username)
        seeded = Seeded(user.username, [t.id for t in tasks], task_sample_ids(session, tasks[0]))
        session.commit()
    return seeded


def two_tasks(session: Session, project: Project) -> list[RankingTask]:
    return [make_task(session, project) for _ in range(2)]


@pytest.fixture(scope="module")
def ranking_project(fresh_database: FreshDatabase) -> Seeded:
    return seed(fresh_database, "ranker", two_tasks, guidelines="Rank **helpful** answers first.")


@pytest.fixture(scope="module")
def script_project(fresh_database: FreshDatabase) -> Seeded:
    texts = ["<script>alert(1)</script>", "<b>not bold</b>", "fine", "also fine"]
    return seed(fresh_database, "escaper", lambda s, p: [make_task(s, p, texts=texts)])


@pytest.fixture(scope="module")
def lease_project(fresh_database: FreshDatabase) -> Seeded:
    return seed(fresh_database, "slowpoke", two_tasks)


@pytest.fixture(scope="module")
def long_prompt_project(fresh_database: FreshDatabase) -> Seeded:
    """A 3,000-word prompt and four long answers: the page is many screens tall uncapped."""

    def long_task(session: Session, project: Project) -> list[RankingTask]:
        words = " ".join(f"word{i}" for i in range(3000))
        prompt = make_prompt(session, project, f"Summarise this: {words}")
        answers = [" ".join([f"answer{n}"] * 400) for n in range(4)]
        return [make_task(session, project, prompt=prompt, texts=answers)]

    return seed(fresh_database, "long-reader", long_task)


THREE_TURNS = [
    "Plan a picnic for four",
    "Where, and when? <b>not bold</b>",
    "Saturday, by the river",
]
URL = "https://example.com/" + "a" * 300  # one unbroken word far wider than a phone
LONG_ANSWER = "\n".join(f"Step {i}: pack item {i}." for i in range(60)) + f"\nSee {URL}\n```\n"
LONG_ANSWER += "x = 1  # " + "y" * 200 + "\n```"
SYSTEM = "You plan outings. Answer briefly."
LONGER_TURNS = ["First question", "First answer", "Second question", LONG_ANSWER, "Last question?"]


def one_conversation(turns: list[str], system: str | None = None) -> Any:
    def make_tasks(session: Session, project: Project) -> list[RankingTask]:
        prompt = make_conversation(session, project, turns, system=system)
        return [make_task(session, project, prompt=prompt)]

    return make_tasks


@pytest.fixture(scope="module")
def conversation_project(fresh_database: FreshDatabase) -> Seeded:
    return seed(fresh_database, "conversant", one_conversation(THREE_TURNS))


@pytest.fixture(scope="module")
def long_conversation_project(fresh_database: FreshDatabase) -> Seeded:
    """A system message and five turns, the fourth a long answer with code and a long URL."""
    return seed(fresh_database, "long-talker", one_conversation(LONGER_TURNS, system=SYSTEM))


def log_in(page: Any, server: LiveServer, username: str) -> None:
    log_in_on_page(page, server.url, username)


def order(page: Any) -> list[int]:
    return [int(i) for i in page.locator("#ranking > li").evaluate_all(
        "cards => cards.map(c => c.dataset.sampleId)"
    )]  # fmt: skip


def card(page: Any, sample_id: int) -> Any:
    return page.locator(f'#ranking > li[data-sample-id="{sample_id}"]')


def test_an_annotator_ranks_by_drag_and_keyboard_ties_and_submits(
    browser: Any, live_server: LiveServer, fresh_database: FreshDatabase, ranking_project: Seeded
) -> None:
    page = browser.new_page()
    console_errors: list[str] = []  # a missing favicon, a CSP violation, a script error
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server, ranking_project.username)
    page.goto(live_server.url + "/annotate")
    page.wait_for_selector("#task-card")
    first_task = int(page.locator("#task-card").get_attribute("data-task-id"))
    a, b, c, d = order(page)  # the shuffled display order; cards are numbered 1-4 so
    assert sorted([a, b, c, d]) == sorted(ranking_project.samples)
    page.click("#guidelines summary")
    assert page.locator("#guidelines strong").inner_text() == "helpful"

    # Drag the last card to the top (dropped on the first card's middle, Sortable puts it above).
    page.wait_for_function("document.getElementById('ranking').dataset.ready === 'true'")
    card(page, d).drag_to(card(page, a))
    assert order(page) == [d, a, b, c]

    # Keyboard: "2" selects b, ArrowUp moves it above a; "3" selects c, "t" ties it with a.
    page.keyboard.press("2")
    page.keyboard.press("ArrowUp")
    assert order(page) == [d, b, a, c]
    page.keyboard.press("3")
    page.keyboard.press("t")
    assert "in-tie" in card(page, a).get_attribute("class")
    assert card(page, c).locator(".tie-badge").is_visible()
    assert card(page, c).locator(".rank-label").inner_text() == "Rank 3"

    page.keyboard.press("Enter")
    page.wait_for_selector(f"#notice:has-text('Saved task {first_task}.')")
    next_task = int(page.locator("#task-card").get_attribute("data-task-id"))
    assert next_task != first_task
    assert page.locator("#done-today").inner_text() == "1"
    assert page.locator("#flash").inner_text() == ""
    assert page.evaluate("document.activeElement.id") == "task-card"  # Tab goes on from here

    with fresh_database.session() as session:
        ranking = session.scalars(select(Ranking).where(Ranking.task_id == first_task)).one()
        pairs = set(
            session.execute(
                select(Comparison.winner_id, Comparison.loser_id, Comparison.tie).where(
                    Comparison.ranking_id == ranking.id
                )
            ).all()
        )
    assert ranking.groups == [[d], [b], [a, c]]
    assert ranking.display_order == [a, b, c, d]
    assert ranking.time_spent_ms is not None
    assert ranking.time_spent_ms > 0
    expected = {(win, lose, False) for win, lose in combinations([d, b, a], 2)} | {
        (d, c, False),
        (b, c, False),
        (min(a, c), max(a, c), True),
    }
    assert pairs == expected
    assert console_errors == []
    page.close()


def submit_a_ranking_of_an_unknown_sample(
    page: Any, live_server: LiveServer, seeded: Seeded
) -> None:
    """Tamper with a card so the ranking names a sample the task does not have; wait for the
    error."""
    log_in(page, live_server, seeded.username)
    page.goto(live_server.url + "/annotate")
    page.wait_for_selector("#task-card")
    page.locator("#ranking > li").first.evaluate("c => { c.dataset.sampleId = '999999'; }")
    page.click("#submit-ranking")
    page.wait_for_selector("#flash .error")


def test_an_error_shows_in_the_flash_and_keeps_the_task(
    browser: Any, live_server: LiveServer, ranking_project: Seeded
) -> None:
    page = browser.new_page()

    submit_a_ranking_of_an_unknown_sample(page, live_server, ranking_project)

    assert "999999" in page.locator("#flash").inner_text()
    assert page.locator("#task-card").is_visible()
    page.close()


def test_an_answer_sent_after_the_lease_ran_out_is_kept(
    browser: Any, live_server: LiveServer, fresh_database: FreshDatabase, lease_project: Seeded
) -> None:
    """The page leases the task again and sends the same answer: the ranking the annotator
    spent the lease on is stored, not thrown away with a blank copy of the task."""
    page = browser.new_page()
    log_in(page, live_server, lease_project.username)
    page.goto(live_server.url + "/annotate")
    page.wait_for_selector("#task-card")
    page.wait_for_function("document.getElementById('ranking').dataset.ready === 'true'")
    task_id = int(page.locator("#task-card").get_attribute("data-task-id"))
    a, b, c, d = order(page)
    card(page, b).focus()  # Tab to a card selects it: the arrow keys move that card
    page.keyboard.press("ArrowUp")
    assert order(page) == [b, a, c, d]
    with fresh_database.session() as session:  # the annotator took longer than the lease
        session.execute(
            update(Assignment)
            .where(Assignment.task_id == task_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()

    page.keyboard.press("Enter")

    page.wait_for_selector(f"#notice:has-text('Saved task {task_id}.')")
    assert page.locator("#flash").inner_text() == ""
    with fresh_database.session() as session:
        ranking = session.scalars(select(Ranking).where(Ranking.task_id == task_id)).one()
        assert ranking.groups == [[b], [a], [c], [d]]
    page.close()


def test_reloading_the_task_clears_an_old_error(
    browser: Any, live_server: LiveServer, ranking_project: Seeded
) -> None:
    page = browser.new_page()
    submit_a_ranking_of_an_unknown_sample(page, live_server, ranking_project)

    page.click("#next-task")

    page.wait_for_function("document.getElementById('flash').innerText.trim() === ''")
    assert page.locator("#task-card").is_visible()
    page.close()


def in_viewport(page: Any, selector: str) -> bool:
    """The element's box lies inside the window and it is what a click at its centre hits."""
    return bool(page.evaluate(
        """sel => {
          const el = document.querySelector(sel);
          const r = el.getBoundingClientRect();
          const inside = r.top >= 0 && r.left >= 0
            && r.bottom <= innerHeight && r.right <= innerWidth;
          const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return inside && (hit === el || el.contains(hit));
        }""",
        selector,
    ))  # fmt: skip


def test_a_long_prompt_scrolls_in_its_box_and_submit_stays_in_reach(
    browser: Any, live_server: LiveServer, long_prompt_project: Seeded
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, live_server, long_prompt_project.username)
    page.goto(live_server.url + "/annotate")
    page.wait_for_selector("#task-card")

    assert in_viewport(page, "#submit-ranking")  # at load, without scrolling
    prompt = page.evaluate(
        """() => { const p = document.getElementById('prompt');
                   return {client: p.clientHeight, scroll: p.scrollHeight,
                           overflow: getComputedStyle(p).overflowY}; }"""
    )
    assert prompt["client"] <= 800 * 0.45  # capped: a slice of the window, not 3,000 words
    assert prompt["scroll"] > 5 * prompt["client"]
    assert prompt["overflow"] in ("auto", "scroll")
    box = page.locator("#prompt").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 600)
    page.wait_for_function("() => document.getElementById('prompt').scrollTop > 0")
    assert page.evaluate("window.scrollY") == 0  # the box scrolled, not the page

    page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")  # among the answers
    assert in_viewport(page, "#submit-ranking")
    page.close()


def test_a_sample_containing_a_script_tag_renders_as_text(
    browser: Any, live_server: LiveServer, script_project: Seeded
) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, live_server, script_project.username)
    page.goto(live_server.url + "/annotate")
    page.wait_for_selector("#task-card")

    texts = page.locator("#ranking .sample-body").all_inner_texts()

    assert "<script>alert(1)</script>" in texts
    assert "<b>not bold</b>" in texts
    assert page.locator("#ranking script, #ranking b").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
    page.close()


def test_the_api_reference_renders_from_our_own_files_under_the_csp(
    browser: Any, live_server: LiveServer
) -> None:
    page = browser.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = {
        page.locator(".opblock-summary-path").nth(i).get_attribute("data-path")
        for i in range(page.locator(".opblock-summary-path").count())
    }
    assert "/api/v1/projects/{project_id}/pairs.jsonl" in paths
    assert requested
    assert all(url.startswith(live_server.url) for url in requested)  # no CDN
    assert not [e for e in errors if "Content Security Policy" in e]
    page.close()


def open_task(page: Any, server: LiveServer, username: str) -> int:
    """Log in, open the ranking page and wait for the task; its id."""
    log_in(page, server, username)
    page.goto(server.url + "/annotate")
    page.wait_for_selector("#task-card")
    return int(page.locator("#task-card").get_attribute("data-task-id"))


def turns(page: Any) -> list[tuple[str, str]]:
    """(role, text) of each turn of the conversation on the page, in document order."""
    return [
        (t.locator(".role").text_content(), t.locator(".turn-body").inner_text())
        for t in page.locator("#prompt .turn").all()
    ]


def no_horizontal_scroll(page: Any) -> bool:
    """Neither the page nor the conversation box scrolls sideways (a code block may)."""
    return bool(page.evaluate(
        """() => { const box = document.getElementById('prompt');
                   return document.documentElement.scrollWidth <= innerWidth
                     && box.scrollWidth <= box.clientWidth; }"""
    ))  # fmt: skip


def test_a_three_turn_conversation_shows_above_the_answers_and_its_ranking_submits(
    browser: Any,
    live_server: LiveServer,
    fresh_database: FreshDatabase,
    conversation_project: Seeded,
) -> None:
    page = browser.new_page()
    task_id = open_task(page, live_server, conversation_project.username)

    assert turns(page) == list(zip(["user", "assistant", "user"], THREE_TURNS, strict=True))
    assert all(t.is_visible() for t in page.locator("#prompt .turn").all())
    assert page.locator("#earlier-turns").count() == 0
    assert page.locator("#prompt b").count() == 0  # the markup shows as text
    last_turn = page.locator("#last-turn").bounding_box()
    assert last_turn["y"] + last_turn["height"] <= page.locator("#ranking").bounding_box()["y"]
    assert "Next assistant turn" in page.locator("#answers-heading").inner_text()

    page.wait_for_function("document.getElementById('ranking').dataset.ready === 'true'")
    shown = order(page)
    page.click("#submit-ranking")

    page.wait_for_selector(f"#notice:has-text('Saved task {task_id}.')")
    with fresh_database.session() as session:
        ranking = session.scalars(select(Ranking).where(Ranking.task_id == task_id)).one()
        assert ranking.groups == [[sample_id] for sample_id in shown]
    page.close()


def test_a_longer_conversation_folds_its_older_turns_and_fits_a_phone(
    browser: Any, live_server: LiveServer, long_conversation_project: Seeded
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    open_task(page, live_server, long_conversation_project.username)
    folded = page.locator("#earlier-turns .turn")
    summary = page.locator("#earlier-turns summary")

    assert no_horizontal_scroll(page)
    assert [folded.nth(i).is_visible() for i in range(folded.count())] == [False, False]
    assert summary.inner_text() == "Show 2 earlier messages"
    assert page.locator(".turn-system").is_visible()
    # The box opens on the last turn, which the long answer before it would push out of view.
    box, last = page.locator("#prompt").bounding_box(), page.locator("#last-turn").bounding_box()
    assert box["y"] <= last["y"]
    assert last["y"] + last["height"] <= box["y"] + box["height"]

    summary.click()

    assert summary.inner_text() == "Hide 2 earlier messages"
    assert all(t.is_visible() for t in folded.all())
    roles = ["system", "user", "assistant", "user", "assistant", "user"]
    first_lines = [text.split("\n")[0] for text in [SYSTEM, *LONGER_TURNS]]
    assert [(role, text.split("\n")[0]) for role, text in turns(page)] == list(
        zip(roles, first_lines, strict=True)
    )
    assert all(r.is_visible() for r in page.locator("#prompt .turn .role").all())
    assert no_horizontal_scroll(page)
    page.close()
