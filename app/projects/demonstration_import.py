"""Read demonstration files (prompt → good response, for SFT): Alpaca, Dolly, OASST2, plain.

Pure functions, no database, on top of the prompt parser's containers and field rules
(app.projects.prompt_import): the same file reads as prompts there and as demonstrations here.
What differs is that a record without a response is an error here, and that by default an
OASST2 tree gives one demonstration per user message with an assistant reply, at any depth: a
message deeper in the tree becomes a multi-turn prompt (the conversation down to it) with the
best-ranked assistant answer (lowest `rank`, then first seen) as the response. An
`Oasst2Options` may take first turns only, or some languages only.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.projects.prompt_import import (
    _PARSERS,
    FORMATS,
    BadRecord,
    LineError,
    Oasst2Options,
    Oasst2Reader,
    Parsed,
    PromptContent,
    Record,
)

__all__ = [
    "FORMATS",
    "FORMAT_LABELS",
    "MAX_RESPONSE_CHARS",
    "DemonstrationParse",
    "ParsedDemonstration",
    "parse_demonstrations",
]

FORMAT_LABELS = {
    "plain": 'Plain: {"prompt", "response"} (or {"messages"} ending with the answer)',
    "alpaca": "Alpaca: instruction, input, output",
    "dolly": "Dolly: instruction, context, response",
    "oasst2": "OpenAssistant OASST2: message lines or trees",
}
MAX_RESPONSE_CHARS = 100_000
OASST2_DEFAULT = Oasst2Options(turns="all")
"""Every answered user turn of a tree is a demonstration unless the import says otherwise."""


@dataclass(frozen=True)
class ParsedDemonstration:
    prompt: PromptContent
    response: str
    source: str
    """The format it came from; stored as Demonstration.source (and Prompt.source if new)."""
    line: int
    """Line of the file where it starts (1-based); for OASST2 the prompter message's line."""


class DemonstrationParse(Parsed[ParsedDemonstration]):
    """`ignored` counts the valid records that give no demonstration: OASST2 replies, prompter
    messages nobody answered, deleted or rejected messages."""

    @property
    def demonstrations(self) -> list[ParsedDemonstration]:
        return self.items


def parse_demonstrations(
    data: bytes, filename: str, fmt: str | None = None, oasst2: Oasst2Options | None = None
) -> DemonstrationParse:
    """Demonstrations, per-line errors and the format of an uploaded file (see `Parsed.read`);
    `oasst2` chooses the user turns of OASST2 trees (default: every answered one)."""
    parser = _DemonstrationParser(Oasst2Reader(oasst2 or OASST2_DEFAULT))
    result = DemonstrationParse.read(data, filename, fmt, parser)
    result.oasst2 = parser.oasst.counts if result.format == "oasst2" else None
    return result


@dataclass
class _DemonstrationParser:
    """A plain, Alpaca or Dolly record with an answer is a demonstration; OASST2 gives one per
    answered user turn the setting takes, with its best-ranked assistant reply."""

    oasst: Oasst2Reader

    def parse(self, record: Record, fmt: str) -> ParsedDemonstration | None:
        if fmt == "oasst2":
            self.oasst.add(record)
            return None
        prompt, response = _PARSERS[fmt](record.data)
        return ParsedDemonstration(prompt, _required_response(response, fmt), fmt, record.line)

    def finish(self) -> tuple[list[ParsedDemonstration], list[LineError]]:
        if not self.oasst.valid_records:
            return [], []
        return self.oasst.select(
            lambda turn, prompt: ParsedDemonstration(
                prompt, _checked_response(turn.answer or ""), "oasst2", turn.line
            ),
            answered_only=True,
        )

    @property
    def ignored(self) -> int:
        return self.oasst.ignored


_ANSWER_FIELD = {"plain": "response", "alpaca": "output", "dolly": "response"}


def _required_response(response: str | None, fmt: str) -> str:
    if not response:
        raise BadRecord(f"missing field '{_ANSWER_FIELD[fmt]}': a demonstration needs an answer")
    return _checked_response(response)


def _checked_response(response: str) -> str:
    if len(response) > MAX_RESPONSE_CHARS:
        raise BadRecord(f"the response is longer than {MAX_RESPONSE_CHARS} characters")
    return response
