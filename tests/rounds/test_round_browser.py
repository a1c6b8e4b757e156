"""The round page's charts in a real Chromium: what an admin sees, not only what the HTML says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.models import Role, RoundState, RoundType, TrainingRound
from tests.conftest import FreshDatabase, LiveServer
from tests.factories import make_project, make_user
from tests.helpers import BROWSER_MARKS, CHROMIUM, log_in_on_page

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def one_epoch_round(fresh_database: FreshDatabase) -> int:
    """A finished round whose reward model trained for one epoch (one point per chart)."""
    with fresh_database.session() as session:
        make_user(session, username="chart-admin", role=Role.admin)
        project = make_project(session, name="Charts")
        training_round = TrainingRound(
            project_id=project.id,
            number=1,
            type=RoundType.reward_ppo,
            state=RoundState.done,
            metrics={
                "reward_model": [{"step": 1, "epoch": 1.0, "loss": 0.69, "heldout_accuracy": 0.625}]
            },
        )
        session.add(training_round)
        session.commit()
        return training_round.id


@pytest.fixture
def page(live_server: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in_on_page(page, live_server.url, "chart-admin")
        yield page
        browser.close()


def test_a_one_epoch_accuracy_chart_shows_its_point_on_a_0_to_1_axis_with_labels(
    page: Any, live_server: LiveServer, one_epoch_round: int
) -> None:
    page.goto(f"{live_server.url}/admin/rounds/{one_epoch_round}")
    chart = page.locator("#chart-reward-model-accuracy svg")
    chart.scroll_into_view_if_needed()

    # The point: drawn, painted, not covered, inside the plot, with its value as a tooltip.
    point = chart.locator(".points circle")
    assert point.count() == 1
    assert point.is_visible()
    box = point.bounding_box()
    assert box["width"] >= 6
    assert box["height"] >= 6
    assert page.evaluate(
        """([x, y]) => { const hit = document.elementFromPoint(x, y);
                         return hit && hit.tagName === 'circle'
                                && getComputedStyle(hit).fill !== 'none'; }""",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert point.locator("title").text_content() == "epoch 1: 0.625"

    # The axes: tick labels on both, titles with units, shown (not clipped to nothing).
    y_labels = chart.locator(".y-axis .tick-label").all_text_contents()
    x_labels = chart.locator(".x-axis .tick-label").all_text_contents()
    assert y_labels == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert x_labels == ["0", "1"]
    assert chart.locator(".x-axis .axis-title").text_content() == "epoch"
    assert "accuracy" in chart.locator(".y-axis .axis-title").text_content()
    assert "0–1" in chart.locator(".y-axis .axis-title").text_content()
    for label in chart.locator("text").all():
        assert label.is_visible()
        assert label.bounding_box()["width"] > 0

    # The range is 0–1: the point at 0.625 sits 62.5% of the way from the 0.0 to the 1.0 tick.
    ticks = chart.locator(".y-axis .tick-label")
    zero, one = ticks.first.bounding_box(), ticks.last.bounding_box()
    zero_y, one_y = zero["y"] + zero["height"] / 2, one["y"] + one["height"] / 2
    point_y = box["y"] + box["height"] / 2
    assert (zero_y - point_y) / (zero_y - one_y) == pytest.approx(0.625, abs=0.02)

    loss_ticks = page.locator("#chart-reward-model-loss .y-axis .tick-label").all_text_contents()
    assert loss_ticks[0] == "0.0"  # a loss axis starts at zero
