"""The annotator pages over HTTP: project choice, the task fragment, JSON answers, escaping."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.schemas import Message, PromptOut
from app.models import Prompt, Ranking, User, WebSession
from tests.annotation.conftest import (
    Annotator,
    Leased,
    best_first,
    lease_one,
    make_conversation,
    make_member,
)
from tests.factories import make_project, make_prompt, make_task

SAMPLE_ID = re.compile(r'data-sample-id="(\d+)"')


def test_the_page_needs_a_login(client: TestClient) -> None:
    response = client.get("/annotate", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_a_user_without_projects_is_told_to_ask_an_admin(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    annotator = log_in(make_member(db_session))

    page = annotator.http.get("/annotate")

    assert 'id="no-projects"' in page.text


def test_several_projects_ask_for_a_choice_which_the_browser_session_keeps(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    one, two = make_project(db_session, name="Alpha"), make_project(db_session, name="Beta")
    annotator = log_in(make_member(db_session, one, two))

    picker = annotator.http.get("/annotate")
    assert 'id="project-choices"' in picker.text
    assert "Alpha" in picker.text and "Beta" in picker.text  # noqa: PT018

    chosen = annotator.http.post(
        "/annotate/project",
        data={"project_id": str(two.id), "csrf_token": annotator.csrf},
        follow_redirects=False,
    )
    assert chosen.status_code == 303

    page = annotator.http.get("/annotate")
    assert "<h1>Beta</h1>" in page.text
    stored = db_session.scalars(select(WebSession).where(WebSession.user_id == annotator.user.id))
    assert stored.one().project_id == two.id


def test_choosing_a_project_one_is_not_a_member_of_is_forbidden(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    mine, other = make_project(db_session), make_project(db_session)
    annotator = log_in(make_member(db_session, mine))

    response = annotator.post("/annotate/project", data={"project_id": str(other.id)})

    assert response.status_code == 403


def test_the_page_loads_a_task_and_shows_the_rendered_guidelines(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, guidelines="Prefer **short** answers.\n\n<b>raw</b>")
    annotator = log_in(make_member(db_session, project))

    page = annotator.http.get("/annotate")

    assert 'hx-post="/annotate/next" hx-trigger="load"' in page.text
    assert "<strong>short</strong>" in page.text
    assert "&lt;b&gt;raw&lt;/b&gt;" in page.text
    assert '<script src="/static/annotate.js" defer></script>' in page.text
    # The Back button must ask again, not show a task from the cache the annotator answered.
    assert page.headers["cache-control"] == "no-store"
    assert "no-store" not in annotator.http.get("/static/annotate.js").headers.get(
        "cache-control", ""
    )


def test_next_task_swaps_in_the_task_block_with_its_samples_in_display_order(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    leased = lease_one(db_session, log_in, samples_per_prompt=5)

    fragment = leased.annotator.post("/annotate/next", htmx=True)

    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<p id="counter"')
    assert "<html" not in fragment.text
    assert f'data-task-id="{leased.task.id}"' in fragment.text
    shown_ids = [s["id"] for s in leased.shown["samples"]]
    assert [int(i) for i in SAMPLE_ID.findall(fragment.text)] == shown_ids


def test_the_page_shows_an_open_lease_without_leasing_again(leased: Leased) -> None:
    page = leased.annotator.http.get("/annotate")

    assert f'data-task-id="{leased.task.id}"' in page.text
    assert 'id="done-today">0<' in page.text


def test_submitting_on_the_page_swaps_in_the_next_task_and_counts_it(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    first, second = make_task(db_session, project), make_task(db_session, project)
    annotator = log_in(make_member(db_session, project))
    shown = annotator.next_task()["task"]
    groups = best_first(shown)

    response = annotator.submit_form(
        first.id,
        {
            "groups": f"[{groups[0]}, {groups[1] + groups[2]}, {groups[3]}]",
            "flags": f'[{{"sample_id": {groups[3][0]}, "reason": "rude"}}]',
            "time_spent_ms": "1234",
        },
    )

    assert response.status_code == 200, response.text
    assert f"Saved task {first.id}." in response.text
    assert f'data-task-id="{second.id}"' in response.text
    assert 'id="done-today">1<' in response.text
    ranking = db_session.scalars(select(Ranking)).one()
    assert ranking.groups == [groups[0], groups[1] + groups[2], groups[3]]
    assert ranking.time_spent_ms == 1234


def test_none_usable_from_the_page_form(db_session: Session, leased: Leased) -> None:
    response = leased.annotator.submit_form(
        leased.task.id, {"none_usable": "true", "none_usable_reason": "all empty", "flags": "[]"}
    )

    assert response.status_code == 200, response.text
    assert 'id="no-task"' in response.text
    ranking = db_session.scalars(select(Ranking)).one()
    assert (ranking.none_usable, ranking.none_usable_reason) == (True, "all empty")


def test_skipping_on_the_page_shows_the_next_task(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session)
    first, second = make_task(db_session, project), make_task(db_session, project)
    annotator = log_in(make_member(db_session, project))
    annotator.next_task()

    response = annotator.post(f"/annotate/tasks/{first.id}/skip", htmx=True)

    assert f"Skipped task {first.id}." in response.text
    assert f'data-task-id="{second.id}"' in response.text


def test_json_answers_have_the_documented_shapes(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, samples_per_prompt=4, annotations_per_task=2)
    first, second = make_task(db_session, project), make_task(db_session, project)
    annotator = log_in(make_member(db_session, project))

    body = annotator.next_task()
    assert set(body) == {"task", "counts", "preparing"}
    assert body["preparing"] is None
    assert set(body["task"]) == {
        "id",
        "project_id",
        "lease_expires_at",
        "prompt",
        "samples",
        "suggestion",
    }
    assert body["task"]["suggestion"] is None  # no judge ranked it
    assert set(body["task"]["samples"][0]) == {"id", "number", "text", "suggested_harmful"}
    assert body["counts"] == {"today": 0, "total": 0}

    submitted = annotator.submit(first.id, {"groups": best_first(body["task"])})
    assert submitted.json() == {
        "ranking_id": submitted.json()["ranking_id"],
        "task_id": first.id,
        "comparisons": 6,
        "ties": 0,
        "task_complete": False,
        "counts": {"today": 1, "total": 1},
    }

    assert annotator.next_task()["task"]["id"] == second.id
    skipped = annotator.post(f"/annotate/tasks/{second.id}/skip")
    assert skipped.json() == {"task_id": second.id, "skipped": True}
    assert annotator.next_task()["task"] is None


def test_a_conversation_prompt_shows_each_turn(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session)
    prompt = make_prompt(db_session, project)
    prompt.messages = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    make_task(db_session, project, prompt=prompt)
    annotator = log_in(make_member(db_session, project))

    fragment = annotator.post("/annotate/next", htmx=True).text

    assert fragment.count('class="turn turn-user"') == 2
    assert 'class="turn turn-assistant"' in fragment
    assert "Tell me a joke" in fragment


def conversation_fragment(
    session: Session,
    log_in: Callable[[User], Annotator],
    turns: list[str],
    system: str | None = None,
) -> str:
    """The task fragment of a new project's one task, whose prompt is this conversation."""
    project = make_project(session)
    prompt = make_conversation(session, project, turns, system=system)
    make_task(session, project, prompt=prompt)
    annotator = log_in(make_member(session, project))
    return annotator.post("/annotate/next", htmx=True).text


def in_order(html: str, *needles: str) -> bool:
    return [html.index(n) for n in needles] == sorted(html.index(n) for n in needles)


def folded_part(html: str) -> str:
    """What the page folds behind the "earlier messages" control."""
    start = html.index('<details class="earlier-turns"')
    return html[start : html.index("</details>", start)]


def test_a_three_turn_conversation_shows_every_turn_in_order_above_the_answers(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    turns = ["Plan a picnic", "Where and when?", "Saturday, by the river"]

    fragment = conversation_fragment(db_session, log_in, turns)

    assert in_order(fragment, "<h2>Conversation", *turns, "Next assistant turn", 'id="ranking"')
    assert "earlier-turns" not in fragment  # nothing to fold: the last turn and two before
    assert fragment.count('class="turn turn-user"') == 2
    assert 'id="last-turn"><span class="role">user</span>' in fragment
    assert "<h2>Prompt</h2>" not in fragment


def test_a_five_turn_conversation_folds_the_turns_before_the_last_three(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    turns = ["Turn one", "Turn two", "Turn three", "Turn four", "Turn five"]

    fragment = conversation_fragment(db_session, log_in, turns)

    folded = folded_part(fragment)
    assert folded.startswith('<details class="earlier-turns" id="earlier-turns">')  # closed
    assert "<summary>" in folded
    assert '"if-closed">Show</span><span class="if-open">Hide</span> 2 earlier messages' in folded
    assert in_order(folded, "Turn one", "Turn two")
    assert "Turn three" not in folded
    assert in_order(fragment, "</details>", "Turn three", "Turn four", "Turn five", 'id="ranking"')


def test_a_system_message_stays_in_view_before_the_folded_turns(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    turns = ["Turn one", "Turn two", "Turn three", "Turn four", "Turn five"]

    fragment = conversation_fragment(db_session, log_in, turns, system="Answer like a pirate")

    assert '<div class="turn turn-system"><span class="role">system</span>' in fragment
    assert "Answer like a pirate" not in folded_part(fragment)
    assert in_order(fragment, "Answer like a pirate", "<details", "Turn one", "Turn five")
    assert "Hide</span> 2 earlier messages</summary>" in fragment


def test_conversation_turns_are_escaped_folded_or_not_and_keep_code_blocks(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    turns = [
        "<script>alert(1)</script>",
        "Try:\n```html\n<b>x</b>\n```",
        "ok",
        "<img src=x onerror=alert(2)>",
        "<b>why?</b>",
    ]

    fragment = conversation_fragment(db_session, log_in, turns, system="<i>be nice</i>")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in folded_part(fragment)
    assert '<pre class="code"><code>&lt;b&gt;x&lt;/b&gt;</code></pre>' in folded_part(fragment)
    assert "&lt;img src=x onerror=alert(2)&gt;" in fragment
    assert "&lt;b&gt;why?&lt;/b&gt;" in fragment
    assert "&lt;i&gt;be nice&lt;/i&gt;" in fragment
    for raw in ("<script>alert", "<img src", "<b>", "<i>"):
        assert raw not in fragment


@pytest.mark.parametrize(
    ("roles", "layout"),
    [
        ("system user", (1, 0, 1)),
        ("user assistant user", (0, 0, 3)),
        ("assistant user assistant user", (0, 0, 4)),  # one old turn alone is not folded
        ("user assistant user assistant user", (0, 2, 3)),
        ("system system user assistant user assistant user assistant user", (2, 4, 3)),
    ],
)
def test_the_page_folds_old_turns_but_keeps_system_messages_and_the_last_three(
    roles: str, layout: tuple[int, int, int]
) -> None:
    messages = [Message(role=role, content=str(i)) for i, role in enumerate(roles.split())]

    conversation = PromptOut(text="", messages=messages).conversation()

    assert conversation is not None
    parts = (conversation.system, conversation.folded, conversation.shown)
    assert tuple(len(part) for part in parts) == layout
    assert [m for part in parts for m in part] == messages


def test_a_one_message_conversation_shows_as_a_plain_prompt(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    fragment = conversation_fragment(db_session, log_in, ["Just this"])

    assert '<h2>Prompt</h2>\n  <div class="prompt" id="prompt">' in fragment
    assert '<div class="sample-text">Just this</div>' in fragment
    assert "user: Just this" not in fragment  # the content, not the flattened text
    assert "Answers <small" in fragment


def test_sample_text_is_escaped_and_code_fences_become_monospace_blocks(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    texts = [
        "<script>alert(1)</script>",
        "Use this:\n```python\nif x < 1:\n    print('&')\n```\nDone.",
        "  indented\n\n\ttabbed",
        "plain",
    ]
    make_task(db_session, project, texts=texts)
    prompt = db_session.scalars(select(Prompt)).one()
    prompt.text = "<img src=x onerror=alert(2)>"
    annotator = log_in(make_member(db_session, project))

    fragment = annotator.post("/annotate/next", htmx=True).text

    assert "<script>alert(1)" not in fragment
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    assert "&lt;img src=x onerror=alert(2)&gt;" in fragment
    assert (
        '<pre class="code"><code>if x &lt; 1:\n    print(&#39;&amp;&#39;)</code></pre>' in fragment
    )
    assert '<div class="sample-text">  indented\n\n\ttabbed</div>' in fragment
