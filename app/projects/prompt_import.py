"""Read the prompt files people already have: plain, Alpaca, Dolly and OpenAssistant (OASST2).

Pure functions, no database: the admin import, the REST API and the SFT demonstrations share
them. A bad record becomes a `LineError` with its line number and the rest of the file still
parses, so one typo does not block an import of ten thousand prompts.

Containers: JSON Lines, a JSON array, or CSV/TSV with a header row; any of them gzipped (the
OASST2 dumps ship as .jsonl.gz). Every format may also carry a response (Alpaca `output`, Dolly
`response`, the best-ranked OASST2 assistant reply, a trailing assistant message), kept on
`ParsedPrompt.response` for SFT demonstrations; prompt imports ignore it.

OASST2 message trees give one prompt per tree (its first user turn, as before conversations),
or with `Oasst2Options(turns="all")` one per user message that has an assistant reply, carrying
the turns above it as its conversation; a language filter keeps some `lang` codes only.
Deleted and review-rejected messages are left out with the replies under them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

from app.errors import InvalidInput

FORMATS = ("plain", "alpaca", "dolly", "oasst2")
FORMAT_LABELS = {
    "plain": 'Plain: {"prompt": text or messages} or {"messages": [...]}',
    "alpaca": "Alpaca: instruction, input, output",
    "dolly": "Dolly: instruction, context, response, category",
    "oasst2": "OpenAssistant OASST2: message lines or trees",
}
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
GUNZIP_CHUNK_BYTES = 256 * 1024
"""Unpacked bytes held at a time while a gzipped upload is measured against the cap."""
MAX_PROMPT_CHARS = 100_000
CHAT_ROLES = ("system", "user", "assistant")

Messages = list[dict[str, str]]
PromptContent = str | Messages


@dataclass(frozen=True)
class ParsedPrompt:
    content: PromptContent
    source: str
    """The format it came from; stored as Prompt.source."""
    line: int
    """Line of the file where the prompt starts (1-based)."""
    response: str | None = None
    """A reference answer when the file has one (for SFT demonstrations)."""


@dataclass(frozen=True)
class LineError:
    line: int
    """1-based line number; 0 when the problem is the file as a whole."""
    message: str


Item = TypeVar("Item")


@dataclass
class Parsed(Generic[Item]):
    """What a file gave: its items (prompts or demonstrations), per-line errors and counts."""

    items: list[Item] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    format: str = "unknown"
    """The format used: the one forced by the caller, or the one detected ("unknown" if none)."""
    records: int = 0
    """Non-blank records read, good or bad (lines of JSONL, items of a JSON array, CSV rows)."""
    ignored: int = 0
    """Valid records that give no item (OASST2 replies, deleted or rejected messages...)."""
    oasst2: Oasst2Counts | None = None
    """OASST2 files: the items per setting and the user turns left out."""

    @classmethod
    def read(cls, data: bytes, filename: str, fmt: str | None, parser: RecordParser[Item]) -> Self:
        """Parse an uploaded file with `parser` making the items of its records.

        `fmt` forces a format; None detects it from the first record whose fields fit one.
        File-level problems (too large, broken gzip, unknown forced format) raise InvalidInput.
        """
        if fmt is not None and fmt not in FORMATS:
            raise InvalidInput(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        result = cls(format=fmt or "unknown")
        pending: list[Record] = []

        def handle(record: Record) -> None:
            try:
                item = parser.parse(record, result.format)
                if item is not None:
                    result.items.append(item)
            except BadRecord as exc:
                result.errors.append(LineError(record.line, str(exc)))

        for item in read_records(data, filename):
            result.records += 1
            if isinstance(item, LineError):
                result.errors.append(item)
                continue
            if result.format == "unknown":
                detected = detect_format(item.data)
                if detected is None:
                    pending.append(item)  # judged once the format is known
                    continue
                result.format = detected
                for earlier in pending:
                    handle(earlier)
                pending.clear()
            handle(item)

        if result.format == "unknown" and pending:
            result.errors.append(
                LineError(
                    0,
                    "Could not recognise the format: no record has a 'prompt', 'messages', "
                    "'instruction' or OASST2 'message_id' field. CSV files need a header row.",
                )
            )
        found, errors = parser.finish()
        result.items.extend(found)
        result.errors.extend(errors)
        result.ignored = parser.ignored
        result.errors.sort(key=lambda e: e.line)
        result.items.sort(key=_line_of)
        return result


def _line_of(item: Any) -> int:
    return int(item.line)


Item_co = TypeVar("Item_co", covariant=True)


class RecordParser(Protocol[Item_co]):
    """What an import makes of a file's records: the one part prompt and demonstration
    imports do not share (containers, format detection and line errors are `Parsed.read`'s)."""

    def parse(self, record: Record, fmt: str) -> Item_co | None:
        """The item of one record in format `fmt`; None when it gives none (yet: OASST2
        messages are matched up in `finish`). A bad record raises BadRecord."""
        ...

    def finish(self) -> tuple[Sequence[Item_co], list[LineError]]:
        """Items and errors known only once the whole file is read."""
        ...

    @property
    def ignored(self) -> int:
        """Valid records that gave no item."""
        ...


class ParseResult(Parsed[ParsedPrompt]):
    @property
    def prompts(self) -> list[ParsedPrompt]:
        return self.items


@dataclass(frozen=True)
class Record:
    line: int
    data: dict[str, Any]


class BadRecord(ValueError):
    """One record is unusable; the parser turns it into a LineError and goes on."""


# Entry point


def parse_prompts(
    data: bytes, filename: str, fmt: str | None = None, oasst2: Oasst2Options | None = None
) -> ParseResult:
    """Prompts, per-line errors and the format of an uploaded file (see `Parsed.read`);
    `oasst2` chooses the user turns of OASST2 trees (default: first turns, every language)."""
    parser = _PromptParser(Oasst2Reader(oasst2 or Oasst2Options()))
    result = ParseResult.read(data, filename, fmt, parser)
    result.oasst2 = parser.oasst.counts if result.format == "oasst2" else None
    return result


@dataclass
class _PromptParser:
    """Plain, Alpaca and Dolly records are prompts; OASST2 user turns are, as the setting says:
    each tree's first one, or every one with an assistant reply."""

    oasst: Oasst2Reader

    def parse(self, record: Record, fmt: str) -> ParsedPrompt | None:
        if fmt == "oasst2":
            self.oasst.add(record)
            return None
        content, response = _PARSERS[fmt](record.data)
        return ParsedPrompt(content, fmt, record.line, response)

    def finish(self) -> tuple[list[ParsedPrompt], list[LineError]]:
        if not self.oasst.valid_records:
            return [], []
        return self.oasst.select(
            lambda turn, content: ParsedPrompt(content, "oasst2", turn.line, turn.answer),
            answered_only=False,
        )

    @property
    def ignored(self) -> int:
        return self.oasst.ignored


def detect_format(data: dict[str, Any]) -> str | None:
    """The format a record's fields point to, or None if they fit none."""
    if "message_id" in data or isinstance(data.get("prompt"), dict):
        return "oasst2"
    if "instruction" in data:
        return "dolly" if {"context", "response", "category"} & data.keys() else "alpaca"
    if "prompt" in data or "messages" in data:
        return "plain"
    return None


# Containers: JSONL, JSON array, CSV/TSV (optionally gzipped)

_JSON_ARRAY_START = re.compile(rb"\s*\[")


def read_records(data: bytes, filename: str) -> Iterator[Record | LineError]:
    """Objects of a file with their line numbers; unreadable lines come out as LineErrors."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; split it")
    data = _gunzip(data) if data[:2] == b"\x1f\x8b" else data
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Excel adds one)
    name = filename.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return _csv_records(data, delimiter="\t" if name.endswith(".tsv") else ",")
    if _JSON_ARRAY_START.match(data):
        return _json_array_records(data)
    return _jsonl_records(data)


def _gunzip(data: bytes) -> bytes:
    """The unpacked file. It is first unpacked chunk by chunk and only counted, so a small
    file that unpacks past MAX_UNZIPPED_BYTES (a "zip bomb") is refused holding one chunk in
    memory; then, its size known, unpacked into one buffer of exactly that size."""
    try:
        size = _unzipped_size(data)
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"The file looks gzipped but cannot be unpacked: {exc}") from exc


def _unzipped_size(data: bytes) -> int:
    size = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while chunk := f.read(GUNZIP_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_UNZIPPED_BYTES:
                raise InvalidInput(f"Unpacked, the file is over {MAX_UNZIPPED_BYTES // 2**20} MiB")
    return size


def _jsonl_records(data: bytes) -> Iterator[Record | LineError]:
    for number, raw in enumerate(io.BytesIO(data), 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield LineError(number, "not UTF-8 text")
            continue
        except json.JSONDecodeError as exc:
            yield LineError(number, f"{_json_problem(exc)} (column {exc.colno})")
            continue
        except (RecursionError, ValueError) as exc:
            yield LineError(number, _json_problem(exc))
            continue
        yield _as_record(number, value)


def _json_array_records(data: bytes) -> Iterator[Record | LineError]:
    """Items of a top-level JSON array (Alpaca's alpaca_data.json), each with its line number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield LineError(data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text")
        return
    decoder = json.JSONDecoder()
    pos = _skip_space(text, text.index("[") + 1)
    line, counted_to = 1, 0

    def line_at(p: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, p)
        counted_to = p
        return line

    if text.startswith("]", pos):
        return
    while True:
        start = line_at(pos)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (RecursionError, ValueError) as exc:  # JSONDecodeError is a ValueError
            at = line_at(exc.pos) if isinstance(exc, json.JSONDecodeError) else start
            yield LineError(at, f"{_json_problem(exc)}; the rest was not read")
            return
        yield _as_record(start, value)
        pos = _skip_space(text, pos)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif text.startswith("]", pos):
            return
        else:
            yield LineError(line_at(pos), "invalid JSON: expected ',' or ']' between items")
            return


def _json_problem(exc: RecursionError | ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg}"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {exc}"  # e.g. an integer of more than 4300 digits


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _csv_records(data: bytes, *, delimiter: str) -> Iterator[Record | LineError]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield LineError(line, "not UTF-8 text; save the file as UTF-8 and upload it again")
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        last_line = reader.line_num
        for row in reader:
            start, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            yield _as_record(start, {k: v for k, v in zip(header, row, strict=False) if k})
    except csv.Error as exc:
        yield LineError(reader.line_num, f"CSV error: {exc}; the rest was not read")


def _as_record(line: int, value: Any) -> Record | LineError:
    if not isinstance(value, dict):
        return LineError(line, f"expected a JSON object, got {_type_name(value)}")
    problem = _unstorable_text(value)
    if problem:
        return LineError(line, problem)
    return Record(line, value)


def _unstorable_text(value: Any) -> str | None:
    """What no database column can hold: NUL (PostgreSQL refuses it) and unpaired UTF-16
    surrogates that JSON escapes such as \\ud800 can carry (they are not encodable text)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "text contains a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text contains an unpaired surrogate (\\ud800-\\udfff)"
    return None


# Fields


def _type_name(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", str: "a string", list: "an array"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), "an object")


def _text(data: dict[str, Any], key: str, *, required: bool) -> str:
    """A string field, stripped; missing or null is "" unless required."""
    value = data.get(key)
    if value is None:
        if required:
            raise BadRecord(f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"'{key}' must be a string, got {_type_name(value)}")
    value = value.strip()
    if required and not value:
        raise BadRecord(f"'{key}' is empty")
    return value


def _checked_length(content: PromptContent) -> PromptContent:
    size = len(content) if isinstance(content, str) else sum(len(m["content"]) for m in content)
    if size > MAX_PROMPT_CHARS:
        raise BadRecord(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
    return content


def prompt_content(value: Any, *, key: str = "prompt") -> PromptContent:
    """A prompt given as text or as chat messages ending with the user's turn.

    A conversation of one user message is stored as plain text, so it deduplicates against the
    same prompt imported from a plain file.
    """
    if value is None:
        raise BadRecord(f"missing field '{key}'")
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord(f"'{key}' is empty")
        return _checked_length(value.strip())
    if isinstance(value, list):
        messages = chat_messages(value, key=key)
        if messages[-1]["role"] != "user":
            raise BadRecord(f"'{key}' must end with a user message")
        if len(messages) == 1:
            return _checked_length(messages[0]["content"])
        return _checked_length(messages)
    raise BadRecord(
        f"'{key}' must be a string or a list of {{role, content}} messages, got {_type_name(value)}"
    )


def chat_messages(value: list[Any], *, key: str) -> Messages:
    """Validated {role, content} messages (other keys dropped)."""
    if not value:
        raise BadRecord(f"'{key}' has no messages")
    messages: Messages = []
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise BadRecord(f"'{key}' message {i} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise BadRecord(
                f"'{key}' message {i}: role must be one of {', '.join(CHAT_ROLES)}, got {role!r}"
            )
        if not isinstance(content, str) or not content.strip():
            raise BadRecord(f"'{key}' message {i}: 'content' must be a non-empty string")
        messages.append({"role": role, "content": content.strip()})
    if not any(m["role"] == "user" for m in messages):
        raise BadRecord(f"'{key}' has no user message")
    return messages


def _response(value: Any) -> str | None:
    """A reference answer given as text or as a trailing assistant message (TRL's `chosen`)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            return last["content"].strip() or None
    return None


# Formats


def _plain(data: dict[str, Any]) -> tuple[PromptContent, str | None]:
    """{"prompt": text | messages} (TRL prompt/chosen/rejected too) or {"messages": [...]}."""
    if "prompt" in data:
        response = next(
            (r for k in ("response", "completion", "chosen") if (r := _response(data.get(k)))),
            None,
        )
        return prompt_content(data["prompt"]), response
    if "messages" in data:
        value = data["messages"]
        if not isinstance(value, list):
            raise BadRecord(f"'messages' must be a list, got {_type_name(value)}")
        messages = chat_messages(value, key="messages")
        response = None
        if messages[-1]["role"] == "assistant":  # a full chat: the last turn is the answer
            response = messages.pop()["content"]
        return prompt_content(messages, key="messages"), response
    raise BadRecord("missing field 'prompt' (or 'messages')")


def _instruction(data: dict[str, Any], extra: str, answer: str) -> tuple[PromptContent, str | None]:
    """Alpaca and Dolly: the instruction, a blank line, then the input/context when there is one."""
    instruction = _text(data, "instruction", required=True)
    more = _text(data, extra, required=False)
    content = f"{instruction}\n\n{more}" if more else instruction
    return _checked_length(content), _text(data, answer, required=False) or None


def _alpaca(data: dict[str, Any]) -> tuple[PromptContent, str | None]:
    return _instruction(data, "input", "output")


def _dolly(data: dict[str, Any]) -> tuple[PromptContent, str | None]:
    return _instruction(data, "context", "response")


_PARSERS = {"plain": _plain, "alpaca": _alpaca, "dolly": _dolly}


# OpenAssistant OASST2

OASST2_TURNS = ("first", "all")
MAX_TREE_MESSAGES = 100_000
"""An OASST2 tree larger than this is refused (the real ones have at most a few hundred)."""
_LANG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


@dataclass(frozen=True)
class Oasst2Options:
    """Which user turns of OASST2 trees an import takes (other formats ignore it)."""

    turns: str = "first"
    """"first": the opening user message of each tree; "all": every user message that has an
    assistant reply, with the turns above it (oldest first) as its conversation."""
    languages: frozenset[str] = frozenset()
    """OASST2 `lang` codes to keep ("en", "pt-br"); empty keeps every language. A message in
    another language is left out with the replies under it; one without `lang` takes its
    parent's."""

    def __post_init__(self) -> None:
        if self.turns not in OASST2_TURNS:
            raise InvalidInput(
                f"turns must be one of {', '.join(OASST2_TURNS)}, got {self.turns!r}",
                details={"field": "turns"},
            )
        bad = sorted(code for code in self.languages if not _LANG.match(code))
        if bad:
            raise InvalidInput(
                f"Not a language code: {', '.join(bad)} (use codes such as en, de, pt-BR)",
                details={"field": "lang"},
            )

    @classmethod
    def of(cls, turns: str | None, lang: str | None, *, default: Oasst2Options) -> Oasst2Options:
        """From a form or a query: `lang` as codes separated by commas or spaces; a blank
        field takes `default`'s value."""
        codes = frozenset(c.lower() for c in re.split(r"[\s,]+", lang or "") if c)
        return cls(turns=turns or default.turns, languages=codes or default.languages)

    @property
    def label(self) -> str:
        """The setting as the pages say it."""
        turns = "first turns only" if self.turns == "first" else "every answered user turn"
        if not self.languages:
            return f"{turns}, every language"
        return f"{turns}, language {', '.join(sorted(self.languages))}"


@dataclass(frozen=True)
class Oasst2Counts:
    """What an OASST2 file gives per setting, so that a preview can offer the choice."""

    setting: Oasst2Options
    """The setting the import used (its language filter applies to every count)."""
    first_turns: int
    """Items with turns="first"."""
    every_turn: int
    """Items with turns="all"."""
    deleted: int
    """User turns the setting takes, left out as deleted or rejected in review (themselves or
    a message above them)."""
    other_language: int
    """User turns the setting takes, left out by the language filter."""
    unanswered: int
    """User turns the setting takes, left out for want of a living assistant reply."""


def _flag(value: Any) -> bool:
    """A boolean that may come from CSV as text."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _rank(value: Any) -> float:
    """OASST2 `rank` (0 = preferred among siblings); unranked replies sort last."""
    try:
        return float(value) if value not in (None, "") else float("inf")
    except (TypeError, ValueError):
        return float("inf")


def _alive(data: dict[str, Any]) -> bool:
    """False for deleted or review-rejected messages: they and their subtree are left out."""
    return not _flag(data.get("deleted")) and data.get("review_result") not in (
        False,
        "False",
        "false",
    )


def _lang(data: dict[str, Any]) -> str | None:
    value = data.get("lang")
    return value.strip().lower() or None if isinstance(value, str) else None


def _chat_role(role: str) -> str:
    return "user" if role == "prompter" else "assistant"


@dataclass
class _Message:
    """One OASST2 message line (the message dumps; the tree dumps nest them)."""

    line: int
    message_id: str
    parent_id: str | None
    role: str
    text: str
    rank: float
    alive: bool
    lang: str | None


def _message(data: dict[str, Any], line: int) -> _Message:
    """An OASST2 message line with its id, role and text checked."""
    message_id = data.get("message_id")
    if not isinstance(message_id, str) or not message_id.strip():
        raise BadRecord("missing field 'message_id'")
    role = data.get("role")
    if role not in ("prompter", "assistant"):
        raise BadRecord(f"'role' must be 'prompter' or 'assistant', got {role!r}")
    text = _text(data, "text", required=True)
    parent_id = data.get("parent_id") or None
    return _Message(
        line=line,
        message_id=message_id,
        parent_id=str(parent_id) if parent_id is not None else None,
        role=role,
        text=text,
        rank=_rank(data.get("rank")),
        alive=_alive(data),
        lang=_lang(data),
    )


@dataclass(frozen=True)
class UserTurn:
    """A prompter message: a prompt (and, answered, a demonstration) if the setting takes it."""

    line: int
    """The record's line: the message line, or the tree's line for every turn of a tree."""
    message_id: str
    root: bool
    conversation: Messages | None
    """From the root down to this message; None when the parent_id links are broken."""
    answer: str | None
    """The best-ranked living reply (lowest `rank`, then first seen) in a kept language."""
    left_out: str | None = None
    """ "deleted" or "language" when the turn or a message above it is dropped."""
    problem: str | None = None
    """Why the conversation could not be linked up (a missing parent, a cycle)."""


OasstItem = TypeVar("OasstItem")


@dataclass
class Oasst2Reader:
    """OASST2 as message lines (any order; linked up at the end) or as one tree per line: every
    prompter message as a `UserTurn`, which `select` filters by the setting."""

    options: Oasst2Options
    messages: dict[str, _Message] = field(default_factory=dict)
    tree_turns: list[UserTurn] = field(default_factory=list)
    valid_records: int = 0
    ignored: int = 0
    """Valid records that gave no item (set by `select`)."""
    counts: Oasst2Counts | None = None
    """Set by `select`."""

    def add(self, record: Record) -> None:
        data = record.data
        if isinstance(data.get("prompt"), dict):
            self.tree_turns.extend(self._tree(record.line, data["prompt"]))
        else:
            message = _message(data, record.line)
            if message.message_id in self.messages:
                raise BadRecord(f"message_id {message.message_id!r} appears twice")
            if message.parent_id is None and message.role != "prompter":
                raise BadRecord("a root message (no parent_id) must have role 'prompter'")
            self.messages[message.message_id] = message
        self.valid_records += 1

    def _left_out(self, alive: bool, lang: str | None) -> str | None:
        if not alive:
            return "deleted"
        if self.options.languages and lang is not None and lang not in self.options.languages:
            return "language"
        return None

    def _best(self, replies: list[tuple[float, int, str]]) -> str | None:
        """The text of the best (rank, position) of the living assistant replies given."""
        return min(replies)[2] if replies else None

    def _tree(self, line: int, root: dict[str, Any]) -> list[UserTurn]:
        """Walk a tree depth first (replies in file order): one turn per prompter message."""
        if root.get("role") != "prompter":
            raise BadRecord(
                f"the tree's 'prompt' must have role 'prompter', got {root.get('role')!r}"
            )
        _text(root, "text", required=True)
        found: list[UserTurn] = []
        stack: list[tuple[dict[str, Any], Messages, str | None, str | None]] = [
            (root, [], None, None)
        ]
        seen = 0
        while stack:
            node, history, lang, left_out = stack.pop()
            seen += 1
            if seen > MAX_TREE_MESSAGES:
                raise BadRecord(f"the tree has more than {MAX_TREE_MESSAGES} messages")
            replies = node.get("replies") or []
            if not isinstance(replies, list):
                raise BadRecord(f"'replies' must be a list, got {_type_name(replies)}")
            lang = _lang(node) or lang
            left_out = left_out or self._left_out(_alive(node), lang)
            turn = {"role": _chat_role(node["role"]), "content": node["text"].strip()}
            conversation = [*history, turn]
            readable = [r for r in replies if _readable_reply(r)]
            if node["role"] == "prompter":
                answers = [
                    (_rank(r.get("rank")), i, r["text"].strip())
                    for i, r in enumerate(readable)
                    if r["role"] == "assistant"
                    and self._left_out(_alive(r), _lang(r) or lang) is None
                ]
                found.append(
                    UserTurn(
                        line,
                        str(node.get("message_id") or ""),
                        root=not history,
                        conversation=conversation,
                        answer=self._best(answers),
                        left_out=left_out,
                    )
                )
            stack.extend((r, conversation, lang, left_out) for r in reversed(readable))
        return found

    def _line_turns(self) -> list[UserTurn]:
        """Message lines: the prompter messages with their conversations linked up."""
        answers: dict[str, list[tuple[float, int, str]]] = {}
        for m in self.messages.values():
            if m.role == "assistant" and m.parent_id is not None:
                parent = self.messages.get(m.parent_id)
                lang = m.lang or (parent.lang if parent else None)
                if self._left_out(m.alive, lang) is None:
                    answers.setdefault(m.parent_id, []).append((m.rank, m.line, m.text))
        found: list[UserTurn] = []
        for m in self.messages.values():
            if m.role != "prompter":
                continue
            answer = self._best(answers.get(m.message_id, []))
            root = m.parent_id is None
            try:
                conversation, left_out = self._linked(m)
            except BadRecord as exc:
                found.append(UserTurn(m.line, m.message_id, root, None, answer, problem=str(exc)))
                continue
            found.append(UserTurn(m.line, m.message_id, root, conversation, answer, left_out))
        return found

    def _linked(self, message: _Message) -> tuple[Messages, str | None]:
        """The turns from the root down to `message`, and why they are left out (or None)."""
        chain: list[_Message] = []
        current: _Message | None = message
        while current is not None:
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
        lang: str | None = None
        left_out: str | None = None
        for m in reversed(chain):
            lang = m.lang or lang
            left_out = left_out or self._left_out(m.alive, lang)
        return [{"role": _chat_role(m.role), "content": m.text} for m in reversed(chain)], left_out

    def select(
        self, make: Callable[[UserTurn, PromptContent], OasstItem], *, answered_only: bool
    ) -> tuple[list[OasstItem], list[LineError]]:
        """The items of the turns the setting takes (prompts take unanswered first turns too;
        `answered_only` for demonstrations), their errors; sets `counts` and `ignored`."""
        turns = self.tree_turns + self._line_turns()

        def takes(turn: UserTurn, setting: str) -> bool:
            return turn.root or setting == "all"

        def answered(turn: UserTurn, setting: str) -> bool:
            return turn.answer is not None or not (answered_only or setting == "all")

        def clean(turn: UserTurn, setting: str) -> bool:
            return (
                takes(turn, setting)
                and answered(turn, setting)
                and turn.left_out is None
                and turn.problem is None
            )

        setting = self.options.turns
        items: list[OasstItem] = []
        errors: list[LineError] = []
        used: set[int] = set()
        for turn in turns:
            if not takes(turn, setting) or turn.left_out is not None:
                continue
            where = "" if turn.root else f"message {turn.message_id!r}: "
            if turn.problem is not None:
                if answered(turn, setting):
                    errors.append(LineError(turn.line, where + turn.problem))
                    used.add(turn.line)
                continue
            if not answered(turn, setting) or turn.conversation is None:
                continue
            used.add(turn.line)
            try:
                items.append(make(turn, prompt_content(turn.conversation)))
            except BadRecord as exc:
                errors.append(LineError(turn.line, where + str(exc)))
        taken = [t for t in turns if takes(t, setting)]
        self.counts = Oasst2Counts(
            setting=self.options,
            first_turns=sum(clean(t, "first") for t in turns),
            every_turn=sum(clean(t, "all") for t in turns),
            deleted=sum(t.left_out == "deleted" for t in taken),
            other_language=sum(t.left_out == "language" for t in taken),
            unanswered=sum(
                t.left_out is None and t.problem is None and not answered(t, setting) for t in taken
            ),
        )
        self.ignored = self.valid_records - len(used)
        return items, errors


def _readable_reply(reply: Any) -> bool:
    """A nested reply worth following; malformed ones are left out silently."""
    return (
        isinstance(reply, dict)
        and reply.get("role") in ("prompter", "assistant")
        and isinstance(reply.get("text"), str)
        and bool(reply["text"].strip())
    )
