"""Demonstration import: each format, OASST2 trees at any depth, bad lines by number, dedup,
prompts found or created, and the preview → confirm service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import Demonstration, Prompt
from app.projects import demonstrations
from app.projects.demonstration_import import ParsedDemonstration, parse_demonstrations
from tests.factories import make_project, make_prompt, make_user
from tests.projects.conftest import Staging, dolly, turns


def jsonl(*records: Any) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def pairs(result: Any) -> list[tuple[Any, str]]:
    return [(d.prompt, d.response) for d in result.demonstrations]


# Formats


def test_alpaca_joins_instruction_and_input_and_takes_output() -> None:
    data = json.dumps(
        [
            {"instruction": "Translate", "input": "chat", "output": "cat"},
            {"instruction": "Name a colour", "input": "", "output": "Blue"},
        ],
        indent=2,
    ).encode()

    result = parse_demonstrations(data, "alpaca_data.json")

    assert result.format == "alpaca"
    assert result.errors == []
    assert pairs(result) == [("Translate\n\nchat", "cat"), ("Name a colour", "Blue")]
    assert [d.line for d in result.demonstrations] == [2, 7]
    assert {d.source for d in result.demonstrations} == {"alpaca"}


def test_dolly_joins_instruction_and_context_and_takes_response() -> None:
    data = jsonl(
        dolly("Who wrote it?", "Dune, 1965", "Frank Herbert", "closed_qa"),
        dolly("Say hi", "", "Hi!", "open_qa"),
    )

    result = parse_demonstrations(data, "dolly.jsonl")

    assert result.format == "dolly"
    assert pairs(result) == [("Who wrote it?\n\nDune, 1965", "Frank Herbert"), ("Say hi", "Hi!")]


def test_plain_prompt_response_and_messages_ending_with_the_answer() -> None:
    chat = turns("Hi", "Hello!", "A joke?", "No.")
    data = jsonl(
        {"prompt": "Why is the sky blue?", "response": "Rayleigh scattering."}, {"messages": chat}
    )

    result = parse_demonstrations(data, "plain.ndjson")

    assert result.format == "plain"
    assert pairs(result) == [("Why is the sky blue?", "Rayleigh scattering."), (chat[:3], "No.")]


def _msg(mid: str, parent: str | None, role: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, **extra}


def test_oasst2_tree_gives_the_best_reply_per_prompter_message_at_every_depth() -> None:
    tree = {
        "message_tree_id": "t1",
        "prompt": {
            "message_id": "p1",
            "role": "prompter",
            "text": "Tell me about cats.",
            "replies": [
                {
                    "message_id": "a2",
                    "role": "assistant",
                    "text": "Second best.",
                    "rank": 1,
                    "replies": [
                        {
                            "message_id": "p3",
                            "role": "prompter",
                            "text": "Why?",
                            "replies": [
                                {
                                    "message_id": "a4",
                                    "role": "assistant",
                                    "text": "Because.",
                                    "rank": 0,
                                }
                            ],
                        }
                    ],
                },
                {
                    "message_id": "a1",
                    "role": "assistant",
                    "text": "Cats purr.",
                    "rank": 0,
                    "replies": [{"message_id": "p2", "role": "prompter", "text": "Unanswered"}],
                },
                {
                    "message_id": "a0",
                    "role": "assistant",
                    "text": "Deleted best.",
                    "rank": 0,
                    "deleted": True,
                },
            ],
        },
    }

    result = parse_demonstrations(jsonl({"other": 1}, tree), "trees.jsonl")

    assert result.format == "oasst2"
    assert pairs(result) == [
        ("Tell me about cats.", "Cats purr."),
        (turns("Tell me about cats.", "Second best.", "Why?"), "Because."),
    ]
    assert {d.line for d in result.demonstrations} == {2}
    assert [e.line for e in result.errors] == [1]  # {"other": 1} is no OASST2 message


def test_oasst2_message_lines_in_any_order_with_deleted_branches_left_out() -> None:
    data = jsonl(
        _msg("a1", "p1", "assistant", "Worse.", rank=1),
        _msg("p1", None, "prompter", "Root question?"),
        _msg("a2", "p1", "assistant", "Better.", rank=0),
        _msg("p2", "a2", "prompter", "Follow-up?"),
        _msg("a3", "p2", "assistant", "Follow-up answer."),
        _msg("p3", None, "prompter", "Rejected root", review_result=False),
        _msg("a4", "p3", "assistant", "Answer to a rejected root."),
        _msg("p4", None, "prompter", "Nobody answered"),
    )

    result = parse_demonstrations(data, "messages.jsonl")

    assert result.errors == []
    assert pairs(result) == [
        ("Root question?", "Better."),
        (turns("Root question?", "Better.", "Follow-up?"), "Follow-up answer."),
    ]
    assert [d.line for d in result.demonstrations] == [2, 4]
    assert result.records == 8
    assert result.ignored == 6


def test_oasst2_message_whose_parent_is_missing_is_reported_at_its_line() -> None:
    data = jsonl(
        _msg("p1", None, "prompter", "Root?"),
        _msg("p2", "a-missing", "prompter", "Orphan?"),
        _msg("a2", "p2", "assistant", "Orphan answer."),
    )

    result = parse_demonstrations(data, "messages.jsonl")

    assert [(e.line, "a-missing" in e.message) for e in result.errors] == [(2, True)]
    assert result.demonstrations == []


# Bad lines


def test_malformed_lines_are_reported_with_their_line_numbers() -> None:
    data = b"\n".join(
        [
            json.dumps({"prompt": "Good", "response": "Fine."}).encode(),
            json.dumps({"prompt": "No answer"}).encode(),
            b"{not json",
            b"",
            json.dumps({"prompt": 7, "response": "x"}).encode(),
            json.dumps(["a", "list"]).encode(),
            json.dumps({"prompt": "Empty answer", "response": "   "}).encode(),
            json.dumps({"prompt": "Also good", "response": "Yes."}).encode(),
        ]
    )

    result = parse_demonstrations(data, "d.jsonl")

    assert pairs(result) == [("Good", "Fine."), ("Also good", "Yes.")]
    assert [e.line for e in result.errors] == [2, 3, 5, 6, 7]
    messages = {e.line: e.message for e in result.errors}
    assert "needs an answer" in messages[2]
    assert messages[3].startswith("invalid JSON")
    assert "'prompt' must be a string" in messages[5]
    assert "expected a JSON object" in messages[6]


def test_alpaca_without_output_and_oasst2_without_role_are_line_errors() -> None:
    alpaca = parse_demonstrations(jsonl({"instruction": "Hi", "input": ""}), "a.jsonl")
    oasst = parse_demonstrations(jsonl({"message_id": "m1", "text": "Hi"}), "o.jsonl")

    assert [(e.line, "'output'" in e.message) for e in alpaca.errors] == [(1, True)]
    assert [(e.line, "'role'" in e.message) for e in oasst.errors] == [(1, True)]


def test_an_unknown_forced_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Unknown format"):
        parse_demonstrations(b"[]", "x.json", "sharegpt")


# Service: dedup, prompts, preview → confirm


def demo(prompt: Any, response: str, source: str = "plain") -> ParsedDemonstration:
    return ParsedDemonstration(prompt, response, source, 1)


def test_add_demonstrations_dedups_per_project_and_in_the_input(db_session: Session) -> None:
    project, other = make_project(db_session), make_project(db_session)
    demonstrations.add_demonstrations(
        db_session, project_id=other.id, demonstrations=[demo("Q", "A")]
    )
    first = demonstrations.add_demonstrations(
        db_session,
        project_id=project.id,
        demonstrations=[demo("Q", "A"), demo("Q", " A "), demo("Q", "Another answer")],
    )
    second = demonstrations.add_demonstrations(
        db_session, project_id=project.id, demonstrations=[demo("Q ", "A"), demo("R", "B")]
    )

    assert (len(first.added), first.duplicates) == (2, 1)
    assert (len(second.added), second.duplicates) == (1, 1)
    rows = db_session.execute(
        select(Prompt.text, Demonstration.response)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .where(Demonstration.project_id == project.id)
        .order_by(Demonstration.id)
    ).all()
    assert [tuple(r) for r in rows] == [("Q", "A"), ("Q", "Another answer"), ("R", "B")]


def test_demonstrations_reuse_existing_prompts_and_create_missing_ones(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    existing = make_prompt(db_session, project, "Known  prompt")
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "More?"},
    ]

    added = demonstrations.add_demonstrations(
        db_session,
        project_id=project.id,
        demonstrations=[demo("Known prompt", "A1"), demo(conversation, "A2", "oasst2")],
    )

    assert added.prompts_added == 1
    assert added.added[0].prompt_id == existing.id
    created = db_session.get(Prompt, added.added[1].prompt_id)
    assert created is not None
    assert (created.messages, created.source) == (conversation, "oasst2")
    assert added.added[1].source == "oasst2"
    assert added.added[1].author_id is None


def test_preview_counts_and_confirm_inserts_what_was_previewed(
    db_session: Session, tmp_path: Path, staging: Staging
) -> None:
    project = make_project(db_session)
    admin = make_user(db_session)
    make_prompt(db_session, project, "Old prompt")
    demonstrations.add_demonstrations(
        db_session, project_id=project.id, demonstrations=[demo("Old prompt", "Old answer")]
    )
    data = jsonl(
        {"prompt": "Old prompt", "response": "Old answer"},
        {"prompt": "Old prompt", "response": "New answer"},
        {"prompt": "New prompt", "response": "Answer"},
        {"prompt": "New prompt", "response": "Answer"},
        {"prompt": "No answer"},
    )

    preview = staging.preview(demonstrations.DEMONSTRATIONS, project.id, admin.id, data, "d.jsonl")

    assert (preview.new, preview.in_project, preview.repeated) == (2, 1, 1)
    assert preview.new_prompts == 1
    assert [e.line for e in preview.errors] == [5]
    assert [r.status for r in preview.rows] == ["in project", "new", "new", "repeated in file"]
    assert preview.token is not None

    outcome = staging.confirm(demonstrations.DEMONSTRATIONS, project.id, admin.id, preview.token)
    db_session.commit()

    assert (outcome.added, outcome.duplicates, outcome.prompts_added, outcome.errors) == (
        2,
        2,
        1,
        1,
    )
    responses = db_session.scalars(
        select(Demonstration.response).where(Demonstration.project_id == project.id)
    )
    assert sorted(responses) == ["Answer", "New answer", "Old answer"]
    assert not list(tmp_path.glob("*.json"))
