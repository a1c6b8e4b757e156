"""Prompt file parsers: the four formats users bring, CSV, and bad lines reported by number."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from app.errors import InvalidInput
from app.projects.prompt_import import LineError, ParsedPrompt, parse_prompts
from tests.projects.conftest import dolly, turns


def jsonl(*records: Any) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def contents(prompts: list[ParsedPrompt]) -> list[Any]:
    return [p.content for p in prompts]


def test_plain_jsonl_reads_text_and_conversation_prompts() -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
    ]
    data = jsonl({"prompt": "Why is the sky blue?"}, {"prompt": conversation})

    result = parse_prompts(data, "prompts.jsonl")

    assert result.format == "plain"
    assert result.errors == []
    assert contents(result.prompts) == ["Why is the sky blue?", conversation]
    assert [p.line for p in result.prompts] == [1, 2]
    assert {p.source for p in result.prompts} == {"plain"}


def test_messages_ending_with_an_assistant_turn_keep_it_as_the_response() -> None:
    messages = turns("Hi", "Hello!", "Tell me a joke", "No.")

    result = parse_prompts(jsonl({"messages": messages}), "chat.jsonl")

    (prompt,) = result.prompts
    assert prompt.content == messages[:3]
    assert prompt.response == "No."


def test_a_single_user_message_is_stored_as_plain_text() -> None:
    """So it deduplicates against the same prompt imported from a plain file."""
    data = jsonl({"prompt": [{"role": "user", "content": "  Same prompt  "}]})

    assert contents(parse_prompts(data, "x.jsonl").prompts) == ["Same prompt"]


def test_trl_preference_lines_are_plain_prompts_with_the_chosen_answer() -> None:
    data = jsonl({"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"})

    (prompt,) = parse_prompts(data, "prefs.jsonl").prompts

    assert (prompt.content, prompt.response) == ("Capital of France?", "Paris")


def test_alpaca_joins_instruction_and_input_with_a_blank_line() -> None:
    data = jsonl(
        {
            "instruction": "Summarise the text.",
            "input": "RankLoop ranks samples.",
            "output": "It ranks.",
        },
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Sleep."},
    )

    result = parse_prompts(data, "alpaca.jsonl")

    assert result.format == "alpaca"
    assert contents(result.prompts) == [
        "Summarise the text.\n\nRankLoop ranks samples.",
        "Give three tips for staying healthy.",
    ]
    assert [p.response for p in result.prompts] == ["It ranks.", "Sleep."]
    assert {p.source for p in result.prompts} == {"alpaca"}


def test_alpaca_json_array_reports_the_line_each_item_starts_on() -> None:
    """alpaca_data.json is one JSON array, pretty-printed."""
    items = [
        {"instruction": "First", "input": "", "output": "a"},
        {"instruction": "", "input": "", "output": "b"},
        {"instruction": "Third", "input": "x", "output": "c"},
    ]
    data = json.dumps(items, indent=4).encode()  # each item spans 5 lines after the "["

    result = parse_prompts(data, "alpaca_data.json")

    assert contents(result.prompts) == ["First", "Third\n\nx"]
    assert [p.line for p in result.prompts] == [2, 12]
    assert result.errors == [LineError(7, "'instruction' is empty")]


def test_dolly_joins_instruction_and_context() -> None:
    data = jsonl(
        dolly(
            "When did Virgin Australia start operating?",
            "Virgin Australia commenced services on 31 August 2000.",
            "On 31 August 2000.",
            "closed_qa",
        ),
        dolly("Which is a species of fish?", "", "Tope", "classification"),
    )

    result = parse_prompts(data, "databricks-dolly-15k.jsonl")

    assert result.format == "dolly"
    assert contents(result.prompts) == [
        "When did Virgin Australia start operating?\n\n"
        "Virgin Australia commenced services on 31 August 2000.",
        "Which is a species of fish?",
    ]
    assert result.prompts[0].response == "On 31 August 2000."


def oasst_message(
    message_id: str, parent_id: str | None, role: str, text: str, **extra: Any
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "role": role,
        "text": text,
        "lang": "en",
        **extra,
    }


def test_oasst2_root_prompter_messages_become_prompts_with_the_best_reply() -> None:
    data = jsonl(
        oasst_message("r1", None, "prompter", "What is RLHF?"),
        oasst_message("a2", "r1", "assistant", "Second best.", rank=1),
        oasst_message(
            "a1", "r1", "assistant", "Reinforcement learning from human feedback.", rank=0
        ),
        oasst_message("p2", "a1", "prompter", "Tell me more."),  # a follow-up, not a root
        oasst_message("r2", None, "prompter", "Write a haiku."),
        oasst_message("r3", None, "prompter", "Spam", deleted=True),
    )

    result = parse_prompts(data, "2023-11-05_oasst2_ready.messages.jsonl")

    assert result.format == "oasst2"
    assert contents(result.prompts) == ["What is RLHF?", "Write a haiku."]
    assert [p.line for p in result.prompts] == [1, 5]
    assert result.prompts[0].response == "Reinforcement learning from human feedback."
    assert result.prompts[1].response is None
    assert result.ignored == 4  # two replies, one follow-up, one deleted root
    assert result.errors == []


def test_oasst2_trees_export_takes_each_tree_root() -> None:
    tree = {
        "message_tree_id": "t1",
        "tree_state": "ready_for_export",
        "prompt": {
            "message_id": "r1",
            "role": "prompter",
            "text": "Explain entropy.",
            "lang": "en",
            "replies": [
                {
                    "message_id": "a1",
                    "role": "assistant",
                    "text": "Worse.",
                    "rank": 1,
                    "replies": [],
                },
                {
                    "message_id": "a2",
                    "role": "assistant",
                    "text": "Better.",
                    "rank": 0,
                    "replies": [],
                },
            ],
        },
    }

    result = parse_prompts(gzip.compress(jsonl(tree)), "2023-11-05_oasst2_ready.trees.jsonl.gz")

    assert result.format == "oasst2"
    (prompt,) = result.prompts
    assert (prompt.content, prompt.response, prompt.line) == ("Explain entropy.", "Better.", 1)


def test_oasst2_root_from_the_assistant_is_a_line_error() -> None:
    data = jsonl(
        oasst_message("r1", None, "prompter", "ok"), oasst_message("x", None, "assistant", "no")
    )

    result = parse_prompts(data, "oasst.jsonl")

    assert result.errors == [
        LineError(2, "a root message (no parent_id) must have role 'prompter'")
    ]


def test_csv_with_a_prompt_column() -> None:
    data = b'id,Prompt\n1,"Hello, world"\n2,"A prompt\nover two lines"\n3,Last\n'

    result = parse_prompts(data, "prompts.csv")

    assert result.format == "plain"
    assert contents(result.prompts) == ["Hello, world", "A prompt\nover two lines", "Last"]
    assert [p.line for p in result.prompts] == [2, 3, 5]


def test_csv_with_alpaca_columns_and_an_empty_input() -> None:
    data = b"instruction,input,output\nTranslate to French,cheese,fromage\nSay hi,,hi\n"

    result = parse_prompts(data, "alpaca.csv")

    assert result.format == "alpaca"
    assert contents(result.prompts) == ["Translate to French\n\ncheese", "Say hi"]


def test_malformed_lines_are_reported_with_their_line_numbers_and_the_rest_is_kept() -> None:
    data = b"\n".join(
        [
            b'{"prompt": "good one"}',
            b'{"prompt": "unterminated}',
            b"",
            b'["not", "an", "object"]',
            b'{"prompt": ""}',
            b'{"prompt": 42}',
            b'{"text": "wrong field"}',
            b'{"prompt": [{"role": "wizard", "content": "x"}]}',
            b'{"prompt": "\xff\xfe"}',
            b'{"prompt": "good two"}',
        ]
    )

    result = parse_prompts(data, "prompts.jsonl")

    assert contents(result.prompts) == ["good one", "good two"]
    assert [p.line for p in result.prompts] == [1, 10]
    assert [(e.line, e.message) for e in result.errors] == [
        (2, "invalid JSON: Unterminated string starting at (column 12)"),
        (4, "expected a JSON object, got an array"),
        (5, "'prompt' is empty"),
        (6, "'prompt' must be a string or a list of {role, content} messages, got a number"),
        (7, "missing field 'prompt' (or 'messages')"),
        (8, "'prompt' message 1: role must be one of system, user, assistant, got 'wizard'"),
        (9, "not UTF-8 text"),
    ]
    assert result.records == 9


def test_format_is_detected_past_leading_bad_records() -> None:
    data = jsonl({"instruktion": "typo"}, {"instruction": "Fine", "input": ""})

    result = parse_prompts(data, "alpaca.jsonl")

    assert result.format == "alpaca"
    assert contents(result.prompts) == ["Fine"]
    assert result.errors == [LineError(1, "missing field 'instruction'")]


def test_a_forced_format_reports_lines_that_do_not_fit_it() -> None:
    data = jsonl({"prompt": "plain line"}, {"instruction": "Alpaca line"})

    result = parse_prompts(data, "mixed.jsonl", fmt="alpaca")

    assert result.format == "alpaca"
    assert contents(result.prompts) == ["Alpaca line"]
    assert result.errors == [LineError(1, "missing field 'instruction'")]


def test_a_file_in_no_known_format_gets_a_file_level_error() -> None:
    result = parse_prompts(jsonl({"question": "a"}, {"question": "b"}), "q.jsonl")

    assert result.format == "unknown"
    assert result.prompts == []
    assert [e.line for e in result.errors] == [0]
    assert "Could not recognise the format" in result.errors[0].message


def test_an_unknown_forced_format_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="Unknown format"):
        parse_prompts(b'{"prompt": "x"}', "x.jsonl", fmt="sharegpt")


def test_a_broken_gzip_file_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="cannot be unpacked"):
        parse_prompts(b"\x1f\x8b" + b"garbage", "x.jsonl.gz")


def test_an_overlong_prompt_is_a_line_error() -> None:
    result = parse_prompts(jsonl({"prompt": "x" * 100_001}), "long.jsonl")

    assert result.errors == [LineError(1, "the prompt is longer than 100000 characters")]


def test_absurdly_nested_json_is_a_line_error_not_a_crash() -> None:
    data = b'{"prompt": "fine"}\n' + b"[" * 100_000 + b"\n"

    result = parse_prompts(data, "deep.jsonl")

    assert result.errors == [LineError(2, "invalid JSON: nested too deeply")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"prompt": "a\\u0000b"}', "text contains a NUL character"),
        (b'{"prompt": "lone \\ud800 surrogate"}', "text contains an unpaired surrogate"),
        (b'{"prompt": "ok", "meta": {"tags": ["x\\u0000"]}}', "text contains a NUL character"),
        (b'{"prompt": ' + b"1" * 5000 + b"}", "invalid JSON: Exceeds the limit"),
    ],
    ids=["nul", "surrogate", "nul_deep_inside", "huge_integer"],
)
def test_text_no_database_can_store_is_a_line_error(line: bytes, message: str) -> None:
    result = parse_prompts(b'{"prompt": "fine"}\n' + line + b"\n", "odd.jsonl")

    assert [p.line for p in result.prompts] == [1]
    assert [e.line for e in result.errors] == [2]
    assert result.errors[0].message.startswith(message)


def test_a_nul_in_a_csv_cell_is_a_line_error() -> None:
    result = parse_prompts(b"prompt\nfine\nbad\x00cell\n", "odd.csv")

    assert [p.line for p in result.prompts] == [2]  # line 1 is the header
    assert [(e.line, e.message) for e in result.errors] == [
        (3, "text contains a NUL character (\\u0000)")
    ]
