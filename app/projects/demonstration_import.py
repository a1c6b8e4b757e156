"""Read demonstration files (prompt → good response, for SFT): Alpaca, Dolly, OASST2, plain.

Pure functions, no database, on top of the prompt parser's containers and field rules
(app.projects.prompt_import): the same file reads as prompts there and as demonstrations here.
What differs is that a record without a response is an error here, and that an OASST2 tree
gives one demonstration per prompter message with an assistant reply, at any depth: a reply
deeper in the tree becomes a multi-turn prompt (the conversation down to that message) with
the best-ranked assistant answer (lowest `rank`, then first seen) as the response.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.projects.prompt_import import (
    _PARSERS,
    FORMATS,
    BadRecord,
    LineError,
    Parsed,
    PromptContent,
    Record,
    _alive,
    _Message,
    _message,
    _rank,
    _text,
    _type_name,
    prompt_content,
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
MAX_TREE_MESSAGES = 100_000
"""An OASST2 tree larger than this is refused (the real ones have at most a few hundred)."""


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


def parse_demonstrations(data: bytes, filename: str, fmt: str | None = None) -> DemonstrationParse:
    """Demonstrations, per-line errors and the format of an uploaded file (see `Parsed.read`)."""
    return DemonstrationParse.read(data, filename, fmt, _DemonstrationParser())


@dataclass
class _DemonstrationParser:
    """A plain, Alpaca or Dolly record with an answer is a demonstration; OASST2 gives one per
    answered prompter message."""

    oasst: _Oasst2Demonstrations = field(default_factory=lambda: _Oasst2Demonstrations())

    def parse(self, record: Record, fmt: str) -> ParsedDemonstration | None:
        if fmt == "oasst2":
            self.oasst.add(record)
            return None
        prompt, response = _PARSERS[fmt](record.data)
        return ParsedDemonstration(prompt, _required_response(response, fmt), fmt, record.line)

    def finish(self) -> tuple[list[ParsedDemonstration], list[LineError]]:
        return self.oasst.finish()

    @property
    def ignored(self) -> int:
        return self.oasst.valid_records - self.oasst.productive_records


_ANSWER_FIELD = {"plain": "response", "alpaca": "output", "dolly": "response"}


def _required_response(response: str | None, fmt: str) -> str:
    if not response:
        raise BadRecord(f"missing field '{_ANSWER_FIELD[fmt]}': a demonstration needs an answer")
    return _checked_response(response)


def _checked_response(response: str) -> str:
    if len(response) > MAX_RESPONSE_CHARS:
        raise BadRecord(f"the response is longer than {MAX_RESPONSE_CHARS} characters")
    return response


# OpenAssistant OASST2


@dataclass
class _Oasst2Demonstrations:
    """OASST2 as message lines (any order; matched up at the end) or as one tree per line."""

    messages: dict[str, _Message] = field(default_factory=dict)
    trees: list[ParsedDemonstration] = field(default_factory=list)
    valid_records: int = 0
    productive_records: int = 0
    """Records (message lines or trees) that gave at least one demonstration."""

    def add(self, record: Record) -> None:
        data = record.data
        if isinstance(data.get("prompt"), dict):
            found = list(self._tree(record.line, data["prompt"]))
            self.valid_records += 1
            self.productive_records += bool(found)
            self.trees.extend(found)
            return
        message = _message(data, record.line)
        if message.message_id in self.messages:
            raise BadRecord(f"message_id {message.message_id!r} appears twice")
        if message.parent_id is None and message.role != "prompter":
            raise BadRecord("a root message (no parent_id) must have role 'prompter'")
        self.messages[message.message_id] = message
        self.valid_records += 1

    def _tree(self, line: int, root: dict[str, Any]) -> Iterator[ParsedDemonstration]:
        """Walk a tree depth first; every living prompter message with an answer gives one."""
        if root.get("role") != "prompter":
            raise BadRecord(
                f"the tree's 'prompt' must have role 'prompter', got {root.get('role')!r}"
            )
        _text(root, "text", required=True)
        if not _alive(root):
            return
        stack: list[tuple[dict[str, Any], list[dict[str, str]]]] = [(root, [])]
        seen = 0
        while stack:
            node, history = stack.pop()
            seen += 1
            if seen > MAX_TREE_MESSAGES:
                raise BadRecord(f"the tree has more than {MAX_TREE_MESSAGES} messages")
            replies = node.get("replies") or []
            if not isinstance(replies, list):
                raise BadRecord(f"'replies' must be a list, got {_type_name(replies)}")
            turn = {
                "role": "user" if node["role"] == "prompter" else "assistant",
                "content": node["text"].strip(),
            }
            conversation = [*history, turn]
            living = [r for r in replies if _living_reply(r)]
            if node["role"] == "prompter":
                answers = [r for r in living if r["role"] == "assistant"]
                if answers:
                    best = min(enumerate(answers), key=lambda a: (_rank(a[1].get("rank")), a[0]))
                    yield ParsedDemonstration(
                        prompt_content(conversation),
                        _checked_response(best[1]["text"].strip()),
                        "oasst2",
                        line,
                    )
            stack.extend((reply, conversation) for reply in reversed(living))

    def finish(self) -> tuple[list[ParsedDemonstration], list[LineError]]:
        """Message lines: one demonstration per living prompter message that has an answer."""
        found: list[ParsedDemonstration] = []
        errors: list[LineError] = []
        best: dict[str, _Message] = {}
        for message in self.messages.values():
            if message.role == "assistant" and message.alive and message.parent_id is not None:
                current = best.get(message.parent_id)
                if current is None or (message.rank, message.line) < (current.rank, current.line):
                    best[message.parent_id] = message
        for message in self.messages.values():
            answer = best.get(message.message_id)
            if message.role != "prompter" or answer is None:
                continue
            try:
                conversation = self._conversation(message)
                if conversation is None:
                    continue  # an ancestor was deleted or rejected: the branch is left out
                found.append(
                    ParsedDemonstration(
                        prompt_content(conversation),
                        _checked_response(answer.text),
                        "oasst2",
                        message.line,
                    )
                )
                self.productive_records += 1
            except BadRecord as exc:
                errors.append(LineError(message.line, str(exc)))
        return self.trees + found, errors

    def _conversation(self, message: _Message) -> list[dict[str, str]] | None:
        """The turns from the root down to `message`; None when a message on the way is dead."""
        chain: list[_Message] = []
        current: _Message | None = message
        while current is not None:
            if not current.alive:
                return None
            if len(chain) > len(self.messages):
                raise BadRecord("the parent_id links form a cycle")
            chain.append(current)
            if current.parent_id is None:
                break
            parent = self.messages.get(current.parent_id)
            if parent is None:
                raise BadRecord(
                    f"parent message {current.parent_id!r} (of {current.message_id!r}) "
                    "is not in the file"
                )
            current = parent
        return [
            {"role": "user" if m.role == "prompter" else "assistant", "content": m.text}
            for m in reversed(chain)
        ]


def _living_reply(reply: Any) -> bool:
    """A nested reply worth following; malformed or dead branches are left out silently."""
    return (
        isinstance(reply, dict)
        and reply.get("role") in ("prompter", "assistant")
        and isinstance(reply.get("text"), str)
        and bool(reply["text"].strip())
        and _alive(reply)
    )
