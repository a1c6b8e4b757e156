"""Strict parsing of a judge's answer lines.

Listwise: the last line starting `RANKING:` must order every label 1..K exactly once, with only
'>' (better than) and '=' (tied) between labels, e.g. `RANKING: 3 > 1 = 2 > 4`. Whitespace around
tokens, a label written as `[3]` and one final period are tolerated; anything else is malformed,
because a guessed ordering is worse than a skipped task.
"""

from __future__ import annotations

import re

from worker.judging.spec import MalformedOutput


def _answer_line(word: str) -> re.Pattern[str]:
    # `WORD:` at the start of a line, optionally in markdown bold (`**WORD:**`).
    return re.compile(rf"^\s*\**\s*{word}\s*\**\s*:\**(?P<body>.*)$", re.IGNORECASE | re.MULTILINE)


_RANKING_LINE = _answer_line("RANKING")
_WINNER_LINE = _answer_line("WINNER")
_HARMFUL_LINE = _answer_line("HARMFUL")
_LABEL = re.compile(r"^(?:\[(\d+)\]|(\d+))$")
_TOKEN = re.compile(r"\s*([>=])\s*")


def _last(pattern: re.Pattern[str], text: str) -> str | None:
    found = list(pattern.finditer(text))
    return found[-1].group("body") if found else None


def _label(token: str, k: int) -> int:
    match = _LABEL.match(token.strip())
    if match is None:
        raise MalformedOutput(f"ranking item {token.strip()[:20]!r} is not a sample label 1..{k}")
    label = int(match.group(1) or match.group(2))
    if not 1 <= label <= k:
        raise MalformedOutput(f"ranking names sample {label}, but there are only {k}")
    return label


def parse_ranking(text: str, k: int) -> list[list[int]]:
    """Labels (1-based, as shown) best first, ties grouped; MalformedOutput otherwise."""
    body = _last(_RANKING_LINE, text)
    if body is None:
        raise MalformedOutput("no 'RANKING:' line in the judge's answer")
    body = body.strip()
    if body.endswith("."):
        body = body[:-1]
    parts = _TOKEN.split(body)  # label, sep, label, sep, ..., label
    if len(parts) % 2 == 0:
        raise MalformedOutput("ranking line ends with a separator")
    groups: list[list[int]] = [[_label(parts[0], k)]]
    for sep, token in zip(parts[1::2], parts[2::2], strict=True):
        label = _label(token, k)
        if sep == "=":
            groups[-1].append(label)
        else:
            groups.append([label])
    seen = [label for group in groups for label in group]
    if len(seen) != len(set(seen)):
        raise MalformedOutput("ranking names a sample more than once")
    if len(seen) != k:
        missing = sorted(set(range(1, k + 1)) - set(seen))
        raise MalformedOutput(f"ranking leaves out sample(s) {missing}")
    return groups


def format_ranking(groups: list[list[int]]) -> str:
    """The answer line parse_ranking reads (used in the prompt's example and in tests)."""
    return "RANKING: " + " > ".join(" = ".join(str(label) for label in g) for g in groups)


def parse_winner(text: str) -> str:
    """'A', 'B' or 'TIE' from the last `WINNER:` line; MalformedOutput otherwise."""
    body = _last(_WINNER_LINE, text)
    if body is None:
        raise MalformedOutput("no 'WINNER:' line in the judge's answer")
    answer = body.strip().rstrip(".").strip().strip("[]").strip().upper()
    if answer not in ("A", "B", "TIE"):
        raise MalformedOutput(f"winner {answer[:20]!r} is not A, B or TIE")
    return answer


def parse_harmful(text: str, k: int) -> dict[int, str]:
    """Labels on a `HARMFUL:` line (`none`, or labels with optional reasons: `2 (threat), 4`).

    Missing line or unreadable items flag nothing: harm flags are only suggestions for people.
    """
    body = _last(_HARMFUL_LINE, text)
    if body is None:
        return {}
    flagged: dict[int, str] = {}
    for item in body.split(","):
        match = re.match(r"^\s*\[?(\d+)\]?\s*(?:\((.*)\))?\s*\.?\s*$", item)
        if match and 1 <= int(match.group(1)) <= k:
            flagged[int(match.group(1))] = (match.group(2) or "flagged by the judge").strip()[:200]
    return flagged
