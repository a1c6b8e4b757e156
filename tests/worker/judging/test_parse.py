"""The listwise answer parser is strict: every label once, only '>' and '=' between them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.judging.parse import format_ranking, parse_harmful, parse_ranking, parse_winner
from worker.judging.prompt import render_prompt
from worker.judging.spec import JudgeInput, JudgeSpec, MalformedOutput


@st.composite
def rankings(draw: st.DrawFn) -> list[list[int]]:
    """A random ordering of labels 1..k cut into tied groups."""
    k = draw(st.integers(1, 9))
    labels = draw(st.permutations(list(range(1, k + 1))))
    cuts = draw(st.lists(st.booleans(), min_size=k - 1, max_size=k - 1))
    groups = [[labels[0]]]
    for label, cut in zip(labels[1:], cuts, strict=True):
        if cut:
            groups.append([label])
        else:
            groups[-1].append(label)
    return groups


@given(rankings())
def test_parse_reads_back_what_format_writes(groups: list[list[int]]) -> None:
    k = sum(len(g) for g in groups)
    assert parse_ranking(format_ranking(groups), k) == groups


@given(
    rankings(),
    st.sampled_from(["", " ", "  ", "\t"]),
    st.booleans(),
    st.booleans(),
    st.text(alphabet="abc xyz\n", max_size=30),
)
def test_parse_tolerates_whitespace_brackets_a_final_period_and_reasoning_before(
    groups: list[list[int]], space: str, brackets: bool, period: bool, reasoning: str
) -> None:
    k = sum(len(g) for g in groups)
    label = (lambda n: f"[{n}]") if brackets else str
    body = f"{space}>{space}".join(f"{space}={space}".join(label(n) for n in g) for g in groups)
    text = f"{reasoning}\nRANKING:{space}{body}{'.' if period else ''}{space}\n"
    assert parse_ranking(text, k) == groups


@given(rankings(), st.data())
def test_parse_rejects_a_ranking_missing_or_repeating_a_label(
    groups: list[list[int]], data: st.DataObject
) -> None:
    k = sum(len(g) for g in groups)
    flat = [n for g in groups for n in g]
    dropped = data.draw(st.sampled_from(flat))
    missing = format_ranking([[n for n in g if n != dropped] for g in groups if g != [dropped]])
    if k > 1:
        with pytest.raises(MalformedOutput, match="leaves out"):
            parse_ranking(missing, k)
    with pytest.raises(MalformedOutput, match="more than once"):
        parse_ranking(format_ranking(groups) + f" > {dropped}", k)


@pytest.mark.parametrize(
    "line",
    [
        "RANKING: 1, 2, 3",
        "RANKING: 1 < 2 < 3",
        "RANKING: 1 >> 2 > 3",
        "RANKING: 1 > 2 > 3 >",
        "RANKING: 1 > 2 > 4",
        "RANKING: 0 > 1 > 2",
        "RANKING: 1 > 2 > three",
        "RANKING: 1 > 2 > 3!",
        "RANKING: 1 > 2 > 3..",
        "RANKING:",
        "1 > 2 > 3",
        "",
    ],
)
def test_parse_rejects_anything_else(line: str) -> None:
    with pytest.raises(MalformedOutput):
        parse_ranking(line, 3)


def test_parse_takes_the_last_ranking_line() -> None:
    text = "RANKING: 1 > 2 > 3\nOn reflection:\n**RANKING:** 3 > 2 = 1"
    assert parse_ranking(text, 3) == [[3], [2, 1]]


@pytest.mark.parametrize(
    ("text", "winner"),
    [("WINNER: A", "A"), ("think...\nwinner: b.", "B"), ("WINNER: [TIE]", "TIE")],
)
def test_winner_parses_a_b_or_tie(text: str, winner: str) -> None:
    assert parse_winner(text) == winner


@pytest.mark.parametrize("text", ["WINNER: C", "A is better", "WINNER: A or B"])
def test_winner_rejects_anything_else(text: str) -> None:
    with pytest.raises(MalformedOutput):
        parse_winner(text)


def test_harmful_line_flags_labels_with_reasons_and_ignores_noise() -> None:
    text = "HARMFUL: 2 (gives dangerous instructions), [4], 9, nonsense\nRANKING: 1 > 2"
    assert parse_harmful(text, 4) == {2: "gives dangerous instructions", 4: "flagged by the judge"}
    assert parse_harmful("HARMFUL: none", 4) == {}


def test_prompt_numbers_principles_labels_samples_and_asks_for_the_ranking_line() -> None:
    spec = JudgeSpec("simulated", "m", "listwise", "", ["Be honest", " ", "Be kind"])
    item = JudgeInput("Say hi {not a placeholder}", [(7, "hi"), (3, "hello")], "Be brief.")
    text = render_prompt(spec, item)
    assert "1. Be honest\n2. Be kind" in text
    assert "[1]\nhi\n\n[2]\nhello" in text
    assert "Say hi {not a placeholder}" in text
    assert "Be brief." in text
    assert text.rstrip().endswith("RANKING: 3 > 1 = 2 > 4")
    custom = JudgeSpec("simulated", "m", "listwise", "P={prompt} S={samples}", [])
    assert render_prompt(custom, item).startswith("P=Say hi {not a placeholder} S=[1]\nhi")
